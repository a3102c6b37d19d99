"""Live paper sources: each turns a remote listing into validated `Paper`s."""
