-- Drops the invoices table and its indexes.
DROP TABLE invoices;
