"""Helpers the whole-process Python tests share (Tests/clients, Tests/faults,
Tests/media): a free loopback port, and waiting for a condition (never for
a duration)."""
import socket
import time


def free_port():
    """A TCP port on 127.0.0.1 nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, seconds, interval=0.1):
    """True once `condition()` is true (its exceptions count as not yet), False after `seconds`."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if condition():
                return True
        except Exception:
            pass
        time.sleep(interval)
    return False
