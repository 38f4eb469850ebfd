#!/usr/bin/env python3
"""etcd_busy.py PORT UPSTREAM CTL: an HTTP proxy on 127.0.0.1:PORT in front of etcd's JSON
gateway at UPSTREAM (host:port) that answers 503, as etcd does while its members elect a leader
or its disk lags, for a window the test opens: while the file CTL exists and holds SEC, every
request that arrives within SEC seconds of CTL's mtime gets

    HTTP 503 {"error":"etcdserver: leader changed","code":14,"message":"etcdserver: leader changed"}

and every other request is passed on, its answer streamed back as it comes (a watch's events
too). It prints "ready" once it listens, and one line per window to stderr: "503 N" after the
first refused request of a window and "pass after N" for the first request passed on after N
refusals (the test waits on that line to know the window is over).

When CTL holds "delay SEC D PATH" instead, every request for PATH (e.g. /v3/kv/range) that
arrives within SEC seconds of CTL's mtime is passed on D seconds late, as from a member that
is slow to answer: a launcher that waits on such ranges runs no watch meanwhile. It prints
"delayed N" once per such request. Runs until killed."""
import http.client
import http.server
import os
import select
import socket
import sys
import threading
import time

PORT, UPSTREAM, CTL = int(sys.argv[1]), sys.argv[2], sys.argv[3]
BUSY = b'{"error":"etcdserver: leader changed","code":14,"message":"etcdserver: leader changed"}'
lock = threading.Lock()
refused = 0  # in the current window


def control():
    """("busy", 0, None) or ("delay", D, PATH) while CTL's window is open, else None."""
    try:
        st = os.stat(CTL)
        with open(CTL) as f:
            words = f.read().split()
        if words and words[0] == "delay":
            sec, how = float(words[1]), ("delay", float(words[2]), words[3])
        else:
            sec, how = float(words[0] if words else 0), ("busy", 0, None)
    except (OSError, ValueError, IndexError):
        return None
    return how if time.time() < st.st_mtime + sec else None


delayed = 0


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        global refused, delayed
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        how = control()
        busy = how is not None and how[0] == "busy"
        if how is not None and how[0] == "delay" and self.path == how[2]:
            with lock:
                delayed += 1
                print("delayed %d" % delayed, file=sys.stderr, flush=True)
            time.sleep(how[1])
        with lock:
            if busy:
                refused += 1
                if refused == 1:
                    print("503 1", file=sys.stderr, flush=True)
            elif refused:
                print("pass after %d" % refused, file=sys.stderr, flush=True)
                refused = 0
        if busy:
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(BUSY)))
            self.end_headers()
            self.wfile.write(BUSY)
            return
        up = http.client.HTTPConnection(UPSTREAM, timeout=600)
        done = threading.Event()
        try:
            up.request("POST", self.path, body, {"Content-Type": "application/json"})
            threading.Thread(target=hang_up, args=(self.connection, up, done), daemon=True).start()
            r = up.getresponse()
            self.send_response(r.status)
            self.send_header("Content-Type", r.getheader("Content-Type", "application/json"))
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while True:
                chunk = r.read1(65536)
                if not chunk:
                    break
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (OSError, http.client.HTTPException):  # the client gave up (a watch's timeout) or etcd went away
            self.close_connection = True
        finally:
            done.set()
            up.close()


def hang_up(client, up, done):
    """Shuts etcd's side when the client goes away mid-answer (a watch that timed out), so
    that the watch ends there too and no thread waits on it forever."""
    while not done.is_set():
        if not select.select([client], [], [], 0.2)[0]:
            continue
        try:
            gone = not client.recv(1, socket.MSG_PEEK)
        except OSError:
            gone = True
        if gone and not done.is_set():
            try:
                up.sock.shutdown(socket.SHUT_RDWR)
            except (OSError, AttributeError):
                pass
        return


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


srv = Server(("127.0.0.1", PORT), Proxy)
print("ready", flush=True)
srv.serve_forever()
