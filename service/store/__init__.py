"""The subscription store: papers, subscribers, the delivery ledger and one-off emails in one
SQL database (SQLite or PostgreSQL). The only package that knows how data is persisted."""

from service.store.engine import Store
from service.store.ledger import DataStart, Ledger
from service.store.notices import ClaimedNotice
from service.store.subscribers import new_link_key

__all__ = ["ClaimedNotice", "DataStart", "Ledger", "Store", "new_link_key"]
