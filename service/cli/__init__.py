"""The admin CLI, `paperwire`: a few lines per command over the functions the workers and the
web app use."""
