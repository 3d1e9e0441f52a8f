#!/usr/bin/env python3
"""Times one durable-mode flush round the way Ferry's flusher could do it, on the disk under
a directory: N segment-like files (64 MiB reserved with fallocate KEEP_SIZE, as Ferry
reserves), one ~1 KiB append to each, then make all N durable. Prints the round time p50/p99
in microseconds and the device flush requests per round (from /proc/diskstats).

Strategies:
  serial   fdatasync each file in turn
  kick     sync_file_range(SYNC_FILE_RANGE_WRITE) on every file first, then fdatasync each
           (what Ferry's flusher does)
  threads  kick, then fdatasync the files from 8 threads at once
  syncfs   kick, then one syncfs() for the whole filesystem
  journal  what Ferry does since the shared journal: each append also written to one
           zero-filled journal file, then one fdatasync of that file (segments untouched)
  journal-append  the same with an appending (not zero-filled) journal file

usage: scripts/flush-rounds.py DIR [FILES] [ROUNDS]
"""
import ctypes
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

SYNC_FILE_RANGE_WRITE = 2
FALLOC_FL_KEEP_SIZE = 1
RESERVED_BYTES = 64 << 20
APPEND_BYTES = 1100

libc = ctypes.CDLL("libc.so.6", use_errno=True)
libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]


def device_flushes(path):
    """Flush requests completed by the block device holding `path` (Linux 5.5+)."""
    dev = os.stat(path).st_dev
    major, minor = os.major(dev), os.minor(dev)
    with open("/proc/diskstats") as stats:
        for line in stats:
            fields = line.split()
            if int(fields[0]) == major and int(fields[1]) == minor and len(fields) >= 20:
                return int(fields[18])
    return None


def run(directory, strategy, files, rounds, pool):
    fds = []
    for i in range(files):
        path = os.path.join(directory, f"segment-{i}")
        if os.path.exists(path):
            os.unlink(path)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        libc.fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, RESERVED_BYTES)
        fds.append(fd)
    journal = None
    if strategy.startswith("journal"):
        path = os.path.join(directory, "journal")
        if os.path.exists(path):
            os.unlink(path)
        journal = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if strategy == "journal":
            zeros = bytes(4096)
            for offset in range(0, files * APPEND_BYTES * rounds + 4096, 4096):
                os.pwrite(journal, zeros, offset)
            os.fsync(journal)
    data = os.urandom(APPEND_BYTES)
    position = 0
    journal_position = 0
    took_us = []
    flushes_before = device_flushes(directory)
    for _ in range(rounds):
        for fd in fds:
            os.pwrite(fd, data, position)
        position += APPEND_BYTES
        start = time.perf_counter()
        if journal is not None:
            for _ in fds:
                os.pwrite(journal, data, journal_position)
                journal_position += APPEND_BYTES
            os.fdatasync(journal)
        elif strategy != "serial":
            for fd in fds:
                libc.sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE)
        if strategy in ("serial", "kick"):
            for fd in fds:
                os.fdatasync(fd)
        elif strategy == "threads":
            list(pool.map(os.fdatasync, fds))
        else:
            libc.syncfs(fds[0])
        took_us.append((time.perf_counter() - start) * 1e6)
    flushes_after = device_flushes(directory)
    for fd in fds + ([journal] if journal is not None else []):
        os.close(fd)
    took_us.sort()
    per_round = (
        f"{(flushes_after - flushes_before) / rounds:.1f}"
        if flushes_before is not None and flushes_after is not None
        else "-"
    )
    print(
        f"{strategy:8} files={files}: round p50 {took_us[len(took_us) // 2]:.0f} us, "
        f"p99 {took_us[int(len(took_us) * 0.99)]:.0f} us, device flushes/round {per_round}"
    )


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else "."
    files = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 300
    work = os.path.join(directory, "flush-rounds")
    os.makedirs(work, exist_ok=True)
    with ThreadPoolExecutor(8) as pool:
        for strategy in ("serial", "kick", "threads", "syncfs", "journal-append", "journal"):
            run(work, strategy, files, rounds, pool)
    for name in os.listdir(work):
        os.unlink(os.path.join(work, name))
    os.rmdir(work)


if __name__ == "__main__":
    main()
