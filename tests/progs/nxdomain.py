#!/usr/bin/env python3
"""nxdomain.py ADDR: a DNS server on ADDR, UDP port 53, that answers every query with NXDOMAIN
(RCODE 3, authoritative), as a cluster's DNS does for a headless Service's name while its pod is
gone. Test namespaces point their resolv.conf here and keep the names that exist in their
/etc/hosts, so a name there resolves and any other fails at once with EAI_NONAME. Prints
"ready" once it listens; runs until killed."""
import socket
import sys

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
print("ready", flush=True)
while True:
    q, peer = s.recvfrom(4096)
    if len(q) < 12 or q[2] & 0x80:  # too short, or an answer
        continue
    i = 12
    while i < len(q) and q[i] != 0:  # the question's name: labels up to the root
        i += 1 + q[i]
    question = q[12:i + 5]  # the name, its 0, QTYPE and QCLASS
    flags = bytes([0x80 | (q[2] & 0x79) | 0x04, 0x80 | 3])  # QR, opcode, AA, RD; RA, NXDOMAIN
    s.sendto(q[:2] + flags + b"\x00\x01\x00\x00\x00\x00\x00\x00" + question, peer)
