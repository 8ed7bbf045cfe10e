"""Fault tests: a private Redis killed and restarted, a faulty fake upstream, slow readers, a soak.

The fast subset runs in `make test`; tests marked `faults` run only in `make faults`.
"""
