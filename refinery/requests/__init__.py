"""Deletion requests: the ledger, receipts, and the scan for deleted samples' bytes."""
from .ledger import LEDGER, STATUSES, LedgerError, Request, add_event, fingerprint, read_ledger, record, version

__all__ = ["LEDGER", "STATUSES", "LedgerError", "Request", "add_event", "fingerprint", "read_ledger", "record",
           "version"]
