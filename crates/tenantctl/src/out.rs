//! Everything `tenantctl` prints to stdout, and how it looks.
//!
//! Every line for stdout goes through [`outln!`] (or [`write`], [`json`], [`Table::print`]):
//! a reader that went away (`tenantctl … | head`) ends the command quietly with success, as
//! other Unix tools do, instead of the panic of `println!`. Colours (`--color`, `NO_COLOR`)
//! are decided once, here, and applied by [`Tone`].

use std::fmt;
use std::io::{self, IsTerminal as _, Write as _};

/// Prints a line to stdout through [`write_line`]: `println!` that survives a closed pipe.
macro_rules! outln {
    () => {
        $crate::out::write_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::out::write_line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// Writes `args` to stdout, without a newline (a prompt); see [`write_line`].
pub fn write(args: fmt::Arguments<'_>) {
    let mut stdout = io::stdout().lock();
    settle(stdout.write_fmt(args).and_then(|()| stdout.flush()));
}

/// Writes `args` and a newline to stdout. A closed pipe ends the process with exit status 0
/// (whoever read the output has what they wanted); any other failure to write ends it with
/// status 1 and the reason on stderr.
pub fn write_line(args: fmt::Arguments<'_>) {
    let mut stdout = io::stdout().lock();
    settle(
        stdout
            .write_fmt(args)
            .and_then(|()| stdout.write_all(b"\n")),
    );
}

/// Writes one JSON value as one line.
pub fn json(value: &serde_json::Value) {
    write_line(format_args!("{value}"));
}

/// Writes bytes made elsewhere (completion scripts) as they are.
pub fn write_bytes(bytes: &[u8]) {
    let mut stdout = io::stdout().lock();
    settle(stdout.write_all(bytes).and_then(|()| stdout.flush()));
}

fn settle(result: io::Result<()>) {
    let Err(error) = result else {
        return;
    };
    if error.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    let _ = writeln!(io::stderr(), "error: cannot write to stdout: {error}");
    std::process::exit(1);
}

/// When to colour the output (`--color`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless NO_COLOR is set.
    #[default]
    Auto,
    /// Always, even into a pipe or a file (and despite NO_COLOR).
    Always,
    /// Never.
    Never,
}

/// Decides colours for stdout and stderr once, before anything is printed.
pub fn use_colors(choice: ColorChoice) {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
    console::set_colors_enabled(colors_wanted(
        choice,
        io::stdout().is_terminal() && !dumb,
        no_color,
    ));
    console::set_colors_enabled_stderr(colors_wanted(
        choice,
        io::stderr().is_terminal() && !dumb,
        no_color,
    ));
}

/// Colours with `--color auto` only on a terminal and without `NO_COLOR` (no-color.org: set
/// and not empty); an explicit `--color` wins over both.
fn colors_wanted(choice: ColorChoice, terminal: bool, no_color: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => terminal && !no_color,
    }
}

/// How a row or a word reads at a glance; plain text when colours are off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Plain,
    /// Done, healthy.
    Good,
    /// Unfinished, needs a look.
    Warn,
    /// Failed, refused, destroys data.
    Bad,
    /// Headers.
    Strong,
}

impl Tone {
    fn style(self) -> console::Style {
        let style = console::Style::new();
        match self {
            Tone::Plain => style,
            Tone::Good => style.green(),
            Tone::Warn => style.yellow(),
            Tone::Bad => style.red(),
            Tone::Strong => style.bold(),
        }
    }

    /// `text` in this tone, for stdout.
    pub fn paint(self, text: impl fmt::Display) -> String {
        self.style().apply_to(text).to_string()
    }

    /// `text` in this tone, for stderr.
    pub fn paint_stderr(self, text: impl fmt::Display) -> String {
        self.style().for_stderr().apply_to(text).to_string()
    }
}

/// A table without borders, columns aligned by `comfy-table`, one line per row (cells are
/// never wrapped, so the output stays greppable), each row coloured by its [`Tone`].
pub struct Table {
    table: comfy_table::Table,
    tones: Vec<Tone>,
    indent: usize,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        let mut table = comfy_table::Table::new();
        table
            .load_style(comfy_table::presets::NOTHING)
            .set_content_arrangement(comfy_table::ContentArrangement::Disabled)
            .set_header(header.to_vec());
        for column in table.column_iter_mut() {
            column.set_padding((0, 2));
        }
        Table {
            table,
            tones: Vec::new(),
            indent: 0,
        }
    }

    /// Right-aligns these columns (numbers).
    pub fn right(mut self, columns: &[usize]) -> Self {
        for index in columns {
            if let Some(column) = self.table.column_mut(*index) {
                column.set_cell_alignment(comfy_table::CellAlignment::Right);
            }
        }
        self
    }

    /// Indents every line by `spaces`.
    pub fn indent(mut self, spaces: usize) -> Self {
        self.indent = spaces;
        self
    }

    /// Adds a row. Line breaks and other control characters in a cell become spaces: one row
    /// is one line.
    pub fn row<I, C>(&mut self, tone: Tone, cells: I)
    where
        I: IntoIterator<Item = C>,
        C: fmt::Display,
    {
        let cells: Vec<String> = cells
            .into_iter()
            .map(|cell| {
                cell.to_string()
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect()
            })
            .collect();
        self.table.add_row(cells);
        self.tones.push(tone);
    }

    pub fn is_empty(&self) -> bool {
        self.tones.is_empty()
    }

    /// The lines as printed, with colours when they are on.
    pub fn lines(&self) -> Vec<String> {
        let pad = " ".repeat(self.indent);
        self.table
            .lines()
            .enumerate()
            .map(|(index, line)| {
                let tone = match index {
                    0 => Tone::Strong,
                    n => self.tones.get(n - 1).copied().unwrap_or(Tone::Plain),
                };
                format!("{pad}{}", tone.paint(line.trim_end()))
            })
            .collect()
    }

    pub fn print(&self) {
        for line in self.lines() {
            write_line(format_args!("{line}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ColorChoice, Table, Tone, colors_wanted};

    #[test]
    fn colours_only_on_a_terminal_without_no_color_unless_forced() {
        assert!(colors_wanted(ColorChoice::Auto, true, false));
        assert!(!colors_wanted(ColorChoice::Auto, false, false));
        assert!(!colors_wanted(ColorChoice::Auto, true, true));
        assert!(colors_wanted(ColorChoice::Always, false, true));
        assert!(!colors_wanted(ColorChoice::Never, true, false));
    }

    #[test]
    fn a_table_is_one_aligned_line_per_row_without_borders() {
        console::set_colors_enabled(false);
        let mut table = Table::new(&["TENANT", "PENDING", "PROBLEMS"]).right(&[1]);
        table.row(Tone::Plain, ["acme_towers", "0", ""]);
        table.row(Tone::Bad, ["b", "12", "line one\nline two"]);
        assert_eq!(
            table.lines(),
            [
                "TENANT       PENDING  PROBLEMS",
                "acme_towers        0",
                "b                 12  line one line two",
            ]
        );
    }
}
