"""CPU time from /proc: a process, a process tree (PostgreSQL's postmaster and its backends), a listening socket's owner.

PostgreSQL: the postmaster's own utime+stime, plus its cutime+cstime (backends that exited and were reaped, which
are otherwise lost), plus utime+stime of every live child. The difference of two such sums is the CPU the server
spent in between, including backends that started and ended in between.
"""
import os
from typing import Optional

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int):
    """(ppid, utime, stime, cutime, cstime) in seconds, or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rindex(")") + 2:].split()
    # fields after the command: state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17)
    return (int(rest[1]), int(rest[11]) / CLK_TCK, int(rest[12]) / CLK_TCK, int(rest[13]) / CLK_TCK,
            int(rest[14]) / CLK_TCK)


def process_cpu(pid: int, with_children: bool = True) -> Optional[float]:
    st = _stat(pid)
    if st is None:
        return None
    return st[1] + st[2] + ((st[3] + st[4]) if with_children else 0.0)


def tree_cpu(root: int) -> Optional[float]:
    st = _stat(root)
    if st is None:
        return None
    total = st[1] + st[2] + st[3] + st[4]
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == root:
            continue
        child = _stat(int(name))
        if child is not None and child[0] == root:
            total += child[1] + child[2]
    return total


def parent_of(pid: int) -> Optional[int]:
    st = _stat(pid)
    return st[0] if st else None


def listener_pid(port: int) -> Optional[int]:
    """The process that listens on a loopback TCP port, or None (not local, or not visible to us)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    local, state, inode = cols[1], cols[3], cols[9]
                    if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                        inodes.add(f"socket:[{inode}]")
        except OSError:
            continue
    if not inodes:
        return None
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{name}/fd"):
                try:
                    if os.readlink(f"/proc/{name}/fd/{fd}") in inodes:
                        return int(name)
                except OSError:
                    continue
        except OSError:
            continue
    return None


class CpuProbe:
    """Snapshots of the CPU seconds PostgreSQL (the postmaster's tree) and ClickHouse (its process) have used."""

    def __init__(self, servers):
        self.postmaster = None
        self.clickhouse = None
        try:
            with servers.pg() as conn, conn.cursor() as cur:
                cur.execute("SELECT pg_backend_pid()")
                backend = cur.fetchone()[0]
            conn.close()
            if _stat(backend) is not None:
                self.postmaster = parent_of(backend)
        except Exception:  # noqa: BLE001 - a remote server: no figures, said in the report
            self.postmaster = None
        if servers.ch_host in ("127.0.0.1", "localhost", "::1"):
            self.clickhouse = listener_pid(servers.ch_http_port) or servers.ch_pid_hint

    def snapshot(self) -> dict:
        return {"postgresql": tree_cpu(self.postmaster) if self.postmaster else None,
                "clickhouse": process_cpu(self.clickhouse) if self.clickhouse else None}

    @staticmethod
    def delta(before: dict, after: dict) -> dict:
        return {k: (after[k] - before[k]) if before.get(k) is not None and after.get(k) is not None else None
                for k in before}
