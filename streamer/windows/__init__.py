"""Pure window logic: compiling a tree into state units, filters, batch
pre-aggregation and reading values from raw state. No I/O here."""
