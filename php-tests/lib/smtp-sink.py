#!/usr/bin/python3
"""A real SMTP server on loopback for the WordPress suite's mail tests.

Usage: smtp-sink.py PORT DIR

aiosmtpd (Debian's python3-aiosmtpd) listens on 127.0.0.1:PORT and writes
every message it accepts to DIR as one .eml file (the envelope recipients
first, as an `X-Sink-Rcpt:` line, then the message as received), renamed
into place so a reader never sees half a file. It runs until SIGTERM. No
relaying, no authentication: it only receives.
"""
import os
import signal
import sys
import threading
import time

from aiosmtpd.controller import Controller


class Sink:
    """Stores each message in the directory, in the order received."""

    def __init__(self, folder):
        self.folder = folder
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        name = os.path.join(self.folder, "%d-%04d.eml" % (time.time_ns(), self.count))
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        with open(name + ".tmp", "wb") as f:
            f.write(("X-Sink-Rcpt: %s\r\n" % ",".join(envelope.rcpt_tos)).encode("ascii"))
            f.write(raw)
        os.rename(name + ".tmp", name)
        return "250 OK"


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: smtp-sink.py PORT DIR")
    port, folder = int(sys.argv[1]), sys.argv[2]
    os.makedirs(folder, exist_ok=True)
    controller = Controller(Sink(folder), hostname="127.0.0.1", port=port)
    controller.start()
    print("smtp-sink: listening on 127.0.0.1:%d" % port, flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    controller.stop()


if __name__ == "__main__":
    main()
