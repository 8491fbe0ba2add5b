"""Clinical code lists as data: the CSV lists, their index, and the checks run when they load."""
