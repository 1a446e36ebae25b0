"""Free TCP ports on 127.0.0.1, for real worker processes in tests."""
import socket


def free_ports(count):
    """`count` distinct ports that were free a moment ago (another process may still
    take one before the caller binds it)."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports
