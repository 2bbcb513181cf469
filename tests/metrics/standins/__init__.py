"""Stand-ins for metric vendors' HTTP APIs, each speaking the documented wire protocol on 127.0.0.1."""
