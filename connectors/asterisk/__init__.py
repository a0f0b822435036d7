"""The Asterisk source: AMI wire protocol, call-leg correlation, and the source that runs them."""
