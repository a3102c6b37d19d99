"""What an operator watches Paperwire by: its metrics and its log lines."""
