"""Errors caused by the user's input, reported as one clear line before any compute."""


class UserError(ValueError):
  """Bad input from the user: a config value, a data file, a command-line flag."""


class ConfigError(UserError):
  """A config value or combination of values is invalid."""


class DataError(UserError):
  """A data file is missing, empty, malformed or too short."""
