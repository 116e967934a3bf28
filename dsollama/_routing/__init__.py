"""Routing: the policy table, backoff and breakers, admission control, and the router."""
