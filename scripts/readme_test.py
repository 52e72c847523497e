#!/usr/bin/env python3
"""README as a new user meets it: run the README's shell blocks, in order, against a dev cluster.

Every ```sh block of the README (also ```bash, ```shell, ```zsh) must be immediately preceded by
an annotation (blank lines between are allowed):

    <!-- readme-test: run -->
    <!-- readme-test: skip: REASON -->

A shell block without one, or an annotation without a shell block after it, is an error, so a new
block cannot silently escape the test.

What it does:
  1. makes a temporary working folder that looks like a checkout after `cargo build --release`:
     the binary at target/release/roster (and on PATH as `roster`), the repository's docs/;
  2. starts `roster dev` there in the background (its own process group) and waits, bounded,
     until the cluster answers `roster ctl revision`;
  3. runs the runnable blocks in README order in ONE `bash -euo pipefail` session (variables such
     as R, CS and V carry over between blocks), echoing every command with its README line;
  4. stops at the first failing command and prints its README line and output;
  5. always stops what it started (the bash session's and the dev cluster's process groups), also
     on failure or timeout, and prints a summary: blocks run, blocks skipped with reasons,
     commands run, time taken.

If 127.0.0.1:7001-7003 are taken, the dev cluster gets other ports (`roster dev --base-port`) and
the commands' 127.0.0.1:7001-7003 addresses are rewritten to them (the summary says so). Other
loopback ports the runnable blocks name must be free.

Exit status: 0 every runnable block passed; 1 a README command failed or timed out; 2 the README's
annotations are wrong (or a usage error); 3 the environment is not usable (the dev cluster did not
start, a port is taken, the binary is missing).

Usage: scripts/readme_test.py [--bin PATH] [--readme PATH] [--timeout SECS] [--keep] [--work-dir DIR] [--list]
"""

import argparse
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHELL_LANGS = {"sh", "bash", "shell", "zsh"}
ANNOTATION = re.compile(r"^<!--\s*readme-test:\s*(run|skip:\s*(.*?))\s*-->\s*$")
ANNOTATION_LIKE = re.compile(r"readme-test")
FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([A-Za-z0-9_+-]*)")
DEV_PORTS = (7001, 7002, 7003)
DEV_READY_SECS = 60
COMMAND_TIMEOUT_SECS = 120
MARK = "\x1breadme-test:"  # starts the lines the harness prints itself in the session's output
NL = "\x1f"  # a newline inside a command, in a marker line


class ReadmeError(Exception):
    """The README's annotations are wrong (exit status 2)."""


class SetupError(Exception):
    """The environment cannot run the test (exit status 3)."""


class Block:
    def __init__(self, index, start_line, lang, annotation, reason, lines):
        self.index = index  # 1-based among shell blocks
        self.start_line = start_line  # README line of the opening fence
        self.lang = lang
        self.action = annotation  # "run" or "skip"
        self.reason = reason
        self.lines = lines  # [(readme_line, text)]
        self.commands = []  # [(readme_line, text)]


def parse_readme(path):
    """The shell blocks of the README with their annotations; raises ReadmeError."""
    with open(path, encoding="utf-8") as f:
        text = f.read().split("\n")
    blocks, errors = [], []
    pending = None  # (line, action, reason) of an annotation not yet used
    in_fence, fence_mark, fence_lang, fence_start, body = False, None, None, 0, []
    for n, line in enumerate(text, start=1):
        if in_fence:
            stripped = line.strip()
            if stripped.startswith(fence_mark[0] * 3) and stripped.strip(fence_mark[0]) == "" and len(stripped) >= len(fence_mark):
                in_fence = False
                if fence_lang in SHELL_LANGS:
                    ann = fence_ann
                    if ann is None:
                        errors.append(f"line {fence_start}: ```{fence_lang} block without a "
                                      "`<!-- readme-test: run -->` or `<!-- readme-test: skip: REASON -->` annotation before it")
                    else:
                        blocks.append(Block(len(blocks) + 1, fence_start, fence_lang, ann[1], ann[2], body))
                continue
            body.append((n, line))
            continue
        m = FENCE.match(line)
        if m:
            in_fence, fence_mark, fence_lang, fence_start, body = True, m.group(2), m.group(3).lower(), n, []
            fence_ann, pending = pending, None
            if fence_ann is not None and fence_lang not in SHELL_LANGS:
                errors.append(f"line {fence_ann[0]}: readme-test annotation before a ```{fence_lang} block (only shell blocks are run)")
            continue
        a = ANNOTATION.match(line.strip())
        if a:
            if pending is not None:
                errors.append(f"line {pending[0]}: readme-test annotation not followed by a shell block")
            if a.group(1) == "run":
                pending = (n, "run", None)
            else:
                reason = (a.group(2) or "").strip()
                if not reason:
                    errors.append(f"line {n}: `skip:` needs a reason")
                pending = (n, "skip", reason)
            continue
        if ANNOTATION_LIKE.search(line) and "<!--" in line:
            errors.append(f"line {n}: malformed readme-test annotation: {line.strip()!r}")
            continue
        if line.strip() and pending is not None:
            errors.append(f"line {pending[0]}: readme-test annotation not followed by a shell block")
            pending = None
    if in_fence:
        errors.append(f"line {fence_start}: code block never closed")
    if pending is not None:
        errors.append(f"line {pending[0]}: readme-test annotation not followed by a shell block")
    if errors:
        raise ReadmeError("\n".join(errors))
    for b in blocks:
        b.commands = split_commands(b)
    return blocks


def parses(source):
    return subprocess.run(["bash", "-n", "-c", source], stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10).returncode == 0


def split_commands(block):
    """Commands of a block: a line, with its `\\` continuations, or as many lines as it takes to
    parse (a loop, a here-document). Blank and comment-only lines are not commands."""
    commands, i, lines = [], 0, block.lines
    while i < len(lines):
        n, text = lines[i]
        if not text.strip() or text.strip().startswith("#"):
            i += 1
            continue
        j, src = i, text
        while True:
            while src.endswith("\\") and j + 1 < len(lines):
                j += 1
                src += "\n" + lines[j][1]
            if parses(src) or j + 1 >= len(lines):
                break
            j += 1
            src += "\n" + lines[j][1]
        if not parses(src):
            raise ReadmeError(f"line {n}: this command does not parse as bash:\n{src}")
        commands.append((n, src))
        i = j + 1
    return commands


def port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def pick_dev_ports():
    """7001-7003 if free, otherwise three free consecutive ports (bounded search)."""
    if all(port_free(p) for p in DEV_PORTS):
        return DEV_PORTS[0]
    for attempt in range(200):
        base = 20000 + (os.getpid() * 7 + attempt * 37) % 10000
        if all(port_free(base + k) for k in range(3)):
            return base
    raise SetupError("127.0.0.1:7001-7003 are taken and no three free consecutive ports were found")


def rewrite_ports(text, base):
    if base == DEV_PORTS[0]:
        return text
    return re.sub(r"\b(127\.0\.0\.1|localhost):(700[123])\b",
                  lambda m: f"{m.group(1)}:{base + int(m.group(2)) - DEV_PORTS[0]}", text)


def other_ports(blocks):
    ports = set()
    for b in blocks:
        if b.action != "run":
            continue
        for _, cmd in b.commands:
            for m in re.finditer(r"\b(?:127\.0\.0\.1|localhost):(\d{2,5})\b", cmd):
                p = int(m.group(1))
                if p not in DEV_PORTS:
                    ports.add(p)
    return sorted(ports)


def place_binary(binary, work):
    """target/release/roster and bin/roster in the working folder, as links to the binary."""
    dests = [os.path.join(work, "target", "release", "roster"), os.path.join(work, "bin", "roster")]
    for dest in dests:
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        try:
            os.link(binary, dest)
        except OSError:
            os.symlink(binary, dest)
    return os.path.join(work, "bin")


def clean_env(bindir):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ROSTER_") and k not in ("RUST_BACKTRACE", "RUST_LOG", "CARGO_TARGET_DIR")}
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    return env


def kill_group(proc, name, grace=5.0):
    """SIGTERM the process group of proc, then SIGKILL what is left (bounded)."""
    if proc is None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        proc.poll()
        time.sleep(0.1)
    else:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
            print(f"readme-test: {name} did not stop within {grace:.0f} s of SIGTERM: killed", flush=True)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def start_dev(work, env, base, deadline):
    log = open(os.path.join(work, "roster-dev.out"), "w")
    args = ["target/release/roster", "dev"]
    if base != DEV_PORTS[0]:
        args += ["--base-port", str(base)]
    print(f"readme-test: starting `{' '.join(args[1:])}` in {work}", flush=True)
    dev = subprocess.Popen(args, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=log,
                           stderr=subprocess.STDOUT, start_new_session=True)
    t0 = time.monotonic()
    until = min(deadline, t0 + DEV_READY_SECS)
    last = ""
    while time.monotonic() < until:
        if dev.poll() is not None:
            break
        probe = subprocess.run(["target/release/roster", "ctl", "--endpoints", f"127.0.0.1:{base}", "revision"],
                               cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        if probe.returncode == 0:
            print(f"readme-test: dev cluster answers after {time.monotonic() - t0:.1f} s", flush=True)
            return dev
        last = (probe.stdout + probe.stderr).strip()
        time.sleep(0.3)
    log.flush()
    with open(os.path.join(work, "roster-dev.out")) as f:
        out = f.read()
    kill_group(dev, "roster dev")
    status = "exited with status %s" % dev.returncode if dev.returncode is not None else "did not answer"
    raise SetupError(f"`roster dev` {status} within {DEV_READY_SECS} s; last probe: {last}\n--- its output:\n{out}")


def session_script(blocks, readme_name, base):
    """The one bash script: every runnable command, preceded by its echo and a marker."""
    out = [
        "# generated by scripts/readme_test.py from " + readme_name,
        "__rt_line=0",
        "__rt_mark=$'\\033'" + shlex.quote(MARK[1:]),
        "__rt_exit() { local rc=$?; if [ $rc -ne 0 ]; then printf '%sfailed %s %s\\n' \"$__rt_mark\" \"$__rt_line\" \"$rc\"; fi; }",
        "trap __rt_exit EXIT",
    ]
    for b in blocks:
        if b.action != "run":
            continue
        out.append(f"printf '%s\\n' {shlex.quote(MARK + f'block {b.index} {b.start_line}')}")
        for n, cmd in b.commands:
            cmd = rewrite_ports(cmd, base)
            out.append(f"__rt_line={n}")
            out.append(f"printf '%s\\n' {shlex.quote(MARK + f'cmd {n} ' + cmd.replace(chr(10), NL))}")
            out.append(cmd)
    out.append(f"printf '%s\\n' {shlex.quote(MARK + 'done')}")
    return "\n".join(out) + "\n"


def run_session(script_path, work, env, deadline, readme_name):
    """Runs the session, streaming its output; returns (ok, commands_run, failure_text)."""
    proc = subprocess.Popen(["bash", "-euo", "pipefail", script_path], cwd=work, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    state = {"cmds": 0, "line": None, "cmd_start": time.monotonic(), "out": [], "cmd": "",
             "failed": None, "done": False}
    lock = threading.Lock()

    def handle(line):
        if not line.startswith(MARK):
            state["out"].append(line)
            print(f"    {line}", flush=True)
            return
        word = line[len(MARK):].split(" ", 2)
        if word[0] == "cmd":
            state["cmds"] += 1
            state["line"] = int(word[1])
            state["cmd_start"] = time.monotonic()
            state["out"] = []
            state["cmd"] = word[2].replace(NL, "\n") if len(word) > 2 else ""
            shown = state["cmd"].replace("\n", "\n" + " " * (len(readme_name) + len(word[1]) + 4))
            print(f"{readme_name}:{word[1]}: $ {shown}", flush=True)
        elif word[0] == "block":
            print(f"\n== block {word[1]} (README line {word[2]})", flush=True)
        elif word[0] == "failed":
            state["failed"] = (int(word[1]), int(word[2]))
        elif word[0] == "done":
            state["done"] = True

    def reader():
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with lock:
                # Output without a final newline runs into the next marker: split it off.
                at = line.find(MARK)
                if at > 0:
                    handle(line[:at])
                    line = line[at:]
                handle(line)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    why = None
    try:
        while proc.poll() is None:
            now = time.monotonic()
            with lock:
                started = state["cmd_start"]
            if now > deadline:
                why = "the whole run took longer than the time limit"
                break
            if now - started > COMMAND_TIMEOUT_SECS:
                why = f"the command ran longer than {COMMAND_TIMEOUT_SECS} s"
                break
            time.sleep(0.1)
    finally:
        kill_group(proc, "the README's shell session")
        t.join(timeout=5)
    with lock:
        cmds, line, out, cmd = state["cmds"], state["line"], list(state["out"]), state["cmd"]
        failed, done = state["failed"], state["done"]
    if why is None and proc.returncode == 0 and done:
        return True, cmds, None
    if why is None:
        if failed:
            line, rc = failed
            why = f"exit status {rc}"
        else:
            why = f"the shell session ended with status {proc.returncode}"
    where = f"{readme_name}:{line}" if line else readme_name
    text = f"FAILED at {where} ({why}):\n  $ {cmd}\n" + "".join(f"  | {l}\n" for l in out[-60:])
    if len(out) > 60:
        text = text.replace("\n  | ", f"\n  | ... ({len(out) - 60} earlier lines)\n  | ", 1)
    return False, cmds, text


def summary(blocks, cmds_run, elapsed, base, ok):
    ran = [b for b in blocks if b.action == "run"]
    skipped = [b for b in blocks if b.action == "skip"]
    lines = ["", "== readme-test summary",
             f"blocks run:     {len(ran)} of {len(blocks)} shell blocks (README lines {', '.join(str(b.start_line) for b in ran)})",
             f"blocks skipped: {len(skipped)}"]
    for b in skipped:
        lines.append(f"  line {b.start_line}: {b.reason}")
    total = sum(len(b.commands) for b in ran)
    lines.append(f"commands run:   {cmds_run} of {total}")
    if base != DEV_PORTS[0]:
        lines.append(f"ports:          127.0.0.1:7001-7003 were taken; ran on {base}-{base + 2} (commands rewritten)")
    lines.append(f"time:           {elapsed:.1f} s")
    lines.append("result:         " + ("PASS" if ok else "FAIL"))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description="Run the README's shell blocks against a dev cluster.")
    ap.add_argument("--bin", default=os.environ.get("ROSTER_BIN", os.path.join(REPO, "target", "release", "roster")),
                    help="the roster binary (default: $ROSTER_BIN, else target/release/roster)")
    ap.add_argument("--readme", default=os.path.join(REPO, "README.md"), help="the README to test")
    ap.add_argument("--timeout", type=float, default=300, help="limit for the whole run, seconds (default 300)")
    ap.add_argument("--keep", action="store_true", help="keep the working folder (it is always kept on failure)")
    ap.add_argument("--work-dir", default=None, help="make the working folder in this directory (default: the system's temp dir)")
    ap.add_argument("--list", action="store_true", help="only check the annotations and list the blocks")
    args = ap.parse_args()

    t0 = time.monotonic()
    deadline = t0 + args.timeout
    readme_name = os.path.basename(args.readme)
    try:
        blocks = parse_readme(args.readme)
    except (ReadmeError, OSError) as e:
        print(f"readme-test: {args.readme}:\n{e}", file=sys.stderr)
        return 2
    if args.list:
        for b in blocks:
            what = "run" if b.action == "run" else f"skip ({b.reason})"
            print(f"block {b.index} line {b.start_line}: {len(b.commands)} commands, {what}")
        return 0

    binary = os.path.abspath(args.bin)
    if not os.access(binary, os.X_OK):
        print(f"readme-test: no roster binary at {binary} (give --bin)", file=sys.stderr)
        return 3

    work = tempfile.mkdtemp(prefix="roster-readme-", dir=args.work_dir)
    dev = None
    ok = False
    cmds_run = 0
    base = DEV_PORTS[0]
    try:
        base = pick_dev_ports()
        busy = [p for p in other_ports(blocks) if not port_free(p)]
        if busy:
            raise SetupError("the README's commands use 127.0.0.1 port(s) "
                             + ", ".join(map(str, busy)) + " which are taken: stop what listens there")
        bindir = place_binary(binary, work)
        docs = os.path.join(REPO, "docs")
        if os.path.isdir(docs):
            shutil.copytree(docs, os.path.join(work, "docs"), ignore=shutil.ignore_patterns("__pycache__", "*.png"))
        env = clean_env(bindir)
        dev = start_dev(work, env, base, deadline)
        script = os.path.join(work, "readme-session.sh")
        with open(script, "w") as f:
            f.write(session_script(blocks, readme_name, base))
        ok, cmds_run, failure = run_session(script, work, env, deadline, readme_name)
        if dev.poll() is not None and ok:
            ok, failure = False, f"`roster dev` exited (status {dev.returncode}) while the README ran"
        if not ok:
            print("\n" + failure, flush=True)
    except SetupError as e:
        print(f"readme-test: {e}", file=sys.stderr, flush=True)
        kill_group(dev, "roster dev")
        print(summary(blocks, cmds_run, time.monotonic() - t0, base, False))
        print(f"working folder kept: {work}")
        return 3
    finally:
        kill_group(dev, "roster dev")
    print(summary(blocks, cmds_run, time.monotonic() - t0, base, ok))
    if ok and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"working folder kept: {work} (roster-dev.out is the dev cluster's output, readme-session.sh the session)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
