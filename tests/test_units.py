#!/usr/bin/python3
"""The service-administration files: the systemd units (systemd/), the
default configuration file (conf/procreg.conf) and the man pages
(conf/man/).

* systemd-analyze verify passes on the system and the user units, with
  ExecStart= pointed at the built ./procregd (in a temporary copy, so that
  the binary exists) and MANPATH at the man pages (so that Documentation=
  resolves); any message counts as a failure, since verify exits 0 even
  for an unknown key, and a deliberately broken copy must be reported.
* Each man page renders with groff -ww, man -l and mandoc -T lint without
  a warning.
* libprocreg(3) has in its SYNOPSIS exactly the PROCREG_API functions of
  include/procreg.h, each with the header's return and parameter types;
  under RETURN VALUES every status of enum procreg_status, with its number
  and the wire name procreg_status_code() gives; and its EXAMPLES build
  against the build tree with -Wall -Wextra -Werror and work: the service
  answers the client's call.
* procregd(8) documents exactly the options of `procregd --help`, with
  the same defaults; procregctl(1) exactly the commands, options (each
  command's own under that command) and exit statuses of `procregctl
  --help` and `procregctl COMMAND --help`; procreg.conf(5) and
  conf/procreg.conf exactly the keys that have an option, with the
  defaults of --help.
* `procregd --check-config` accepts conf/procreg.conf, with the
  commented-out socket settings too, and refuses a comment after a value.

A tool that is not installed skips its checks, counted and named, never
passed.  Every subprocess is bounded by a timeout."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DAEMON = os.environ.get("PROCREGD", os.path.join(ROOT, "procregd"))
CTL = os.environ.get("PROCREGCTL", os.path.join(ROOT, "procregctl"))
UNITS = os.path.join(ROOT, "systemd")
CONF = os.path.join(ROOT, "conf", "procreg.conf")
MAN = os.path.join(ROOT, "conf", "man")
PAGES = ["procregctl.1", "libprocreg.3", "procreg.conf.5", "procreg.7",
         "procregd.8"]
HEADER = os.path.join(ROOT, "include", "procreg.h")
INSTALLED_DAEMON = "/usr/sbin/procregd"
# Options of procregd that have no key in the configuration file.
CLI_ONLY = {"config", "check-config", "foreground", "verbose", "quiet",
            "system", "help", "version"}

results = {"passed": 0, "failed": 0, "skipped": 0}
skips = []


def check(what, cond, detail=""):
    results["passed" if cond else "failed"] += 1
    print(("ok      " if cond else "FAILED  ") + what +
          ("" if cond or not detail else f": {detail}"), flush=True)
    return cond


def skip(what, why):
    results["skipped"] += 1
    skips.append(what)
    print(f"SKIPPED {what}: {why}", flush=True)


def run(argv, timeout=60, env=None, **kw):
    """Run argv; (exit status, stdout, stderr), status None on timeout.
    The C.UTF-8 locale always exists: man and groff then neither complain
    about a missing one nor fall back to ASCII."""
    env = dict(env if env is not None else os.environ, LC_ALL="C.UTF-8")
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=timeout,
                           env=env, **kw)
    except subprocess.TimeoutExpired:
        return None, "", f"timed out after {timeout} s"
    except OSError as e:
        return None, "", str(e)
    return p.returncode, p.stdout, p.stderr


def normalize(text):
    """Rendered text with typographic dashes and quotes made ASCII."""
    for a, b in (("\u2010", "-"), ("\u2011", "-"), ("\u2212", "-"),
                 ("\u2018", "'"), ("\u2019", "'"), ("\u201c", '"'),
                 ("\u201d", '"'), ("\u00ad", "")):
        text = text.replace(a, b)
    return re.sub(r".\x08", "", text)


# ---- the help texts ----

def help_options(text):
    """[(short or None, long, rest of line)] of the option lines of a
    --help text."""
    opts = []
    within = False
    for line in text.splitlines():
        m = re.match(r"^\s+(?:-(\w), )?--([a-z][a-z-]*)(.*)$", line)
        if m:
            opts.append((m.group(1), m.group(2), m.group(3)))
            within = True
        elif within and re.match(r"^ {20,}\S", line):
            # A description wrapped to fit 80 columns goes on.
            short, name, rest = opts[-1]
            opts[-1] = (short, name, rest + " " + line.strip())
        else:
            within = False
    return opts


def help_defaults(text, numeric=False):
    """{long option: its "(default X)"} from a --help text; numeric: of
    the options that take a number N only."""
    d = {}
    for short, name, rest in help_options(text):
        m = re.search(r"\(default ([^),]+)", rest)
        if m and (not numeric or rest.startswith(" N ")):
            d[name] = m.group(1).strip()
    return d


def help_section(text, title):
    """The lines of a --help text after the line `title`, up to a blank
    line."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == title:
            out = []
            for l in lines[i + 1:]:
                if not l.strip():
                    break
                out.append(l)
            return out
    return []


# ---- rendered man pages ----

def render(page):
    """The page as plain text, one paragraph per line, or None."""
    path = os.path.join(MAN, page)
    if shutil.which("groff"):
        rc, out, err = run(["groff", "-mandoc", "-Tutf8", "-P-cbou",
                            "-rLL=5000n", path])
    elif shutil.which("mandoc"):
        rc, out, err = run(["mandoc", "-Tutf8", "-Owidth=5000", path])
    else:
        return None
    # A page that does not render fails the checks that read it.
    return normalize(out) if rc == 0 else ""


def man_section(text, title):
    """The lines of a rendered section (title at column 0) or subsection
    (title at column 3), up to the next heading of the same level or
    higher."""
    lines = text.splitlines()
    depth = None
    out = []
    for line in lines:
        heading = re.match(r"^( {0,3})(\S.*)$", line)
        if depth is None:
            if heading and heading.group(2).strip() == title:
                depth = len(heading.group(1))
            continue
        if heading and len(heading.group(1)) <= depth:
            break
        out.append(line)
    return out


def item_options(lines):
    """{long: short or None} of the option items (tag heads) in lines."""
    opts = {}
    for line in lines:
        m = re.match(r"^ +(?:-(\w), )?--([a-z][a-z-]*)(?:\s|$)", line)
        if m:
            opts[m.group(2)] = m.group(1)
    return opts


def mentions_option(text, short, name):
    ok = re.search(r"(?<![\w-])--" + re.escape(name) + r"(?![\w-])", text)
    if short:
        ok = ok and re.search(r"(?<![\w-])-" + short + r"(?![\w-])", text)
    return bool(ok)


# ---- systemd units ----

def man_tree(tmp):
    """A MANPATH directory holding the pages, so that systemd-analyze can
    resolve Documentation=man:...; its path."""
    top = os.path.join(tmp, "man")
    for page in PAGES:
        d = os.path.join(top, "man" + page.rsplit(".", 1)[1])
        os.makedirs(d, exist_ok=True)
        shutil.copy(os.path.join(MAN, page), d)
    return top


def unit_copy(src_dir, dst_dir, mangle=None):
    """Copy procreg.socket and procreg.service with the installed daemon's
    path replaced by the built one."""
    os.makedirs(dst_dir, exist_ok=True)
    for name in ("procreg.socket", "procreg.service"):
        with open(os.path.join(src_dir, name)) as f:
            text = f.read().replace(INSTALLED_DAEMON, os.path.abspath(DAEMON))
        if mangle and name == "procreg.service":
            text = mangle(text)
        with open(os.path.join(dst_dir, name), "w") as f:
            f.write(text)


def verify(label, src, user, tmp, manpath):
    if not os.path.isfile(os.path.join(src, "procreg.service")):
        check(f"{label} units exist", False, src)
        return
    work = os.path.join(tmp, label.replace(" ", "-"))
    unit_copy(src, work)
    env = dict(os.environ, MANPATH=manpath)
    if user:
        rt = os.path.join(tmp, "runtime")
        os.makedirs(rt, mode=0o700, exist_ok=True)
        env["XDG_RUNTIME_DIR"] = rt
    argv = ["systemd-analyze"] + (["--user"] if user else []) + [
        "verify", "procreg.socket", "procreg.service"]
    rc, out, err = run(argv, cwd=work, env=env)
    check(f"systemd-analyze verify: {label} units", rc == 0 and
          not out.strip() and not err.strip(), f"exit {rc}: {err or out}")
    # The same with a broken line: verify must say so (or the check above
    # would pass whatever the files said).
    broken = os.path.join(tmp, label.replace(" ", "-") + "-broken")
    unit_copy(src, broken, lambda t: re.sub(
        r"(?m)^\[Service\]\n", "[Service]\nNoSuchSetting=yes\n", t, 1))
    rc, out, err = run(argv, cwd=broken, env=env)
    check(f"systemd-analyze verify reports a broken {label} unit",
          "NoSuchSetting" in err + out, f"exit {rc}: {err or out}")


def unit_settings(path):
    """{key: [values]} of a unit file (all sections together)."""
    d = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;[":
                continue
            k, _, v = line.partition("=")
            d.setdefault(k.strip(), []).append(v.strip())
    return d


def test_units(tmp):
    manpath = man_tree(tmp)
    if shutil.which("systemd-analyze") is None:
        skip("systemd-analyze verify (system and user units)",
             "systemd-analyze is not installed")
    elif not os.access(DAEMON, os.X_OK):
        check("the built procregd exists for systemd-analyze", False, DAEMON)
    else:
        verify("system", UNITS, False, tmp, manpath)
        verify("user", os.path.join(UNITS, "user"), True, tmp, manpath)

    # What the man pages say about the units.
    sock = unit_settings(os.path.join(UNITS, "procreg.socket"))
    svc = unit_settings(os.path.join(UNITS, "procreg.service"))
    usock = unit_settings(os.path.join(UNITS, "user", "procreg.socket"))
    usvc = unit_settings(os.path.join(UNITS, "user", "procreg.service"))
    check("system socket: /run/procreg/procreg.sock, mode 0666",
          sock.get("ListenStream") == ["/run/procreg/procreg.sock"] and
          sock.get("SocketMode") == ["0666"])
    check("user socket: %t/procreg.sock, mode 0600",
          usock.get("ListenStream") == ["%t/procreg.sock"] and
          usock.get("SocketMode") == ["0600"])
    # The system unit passes --system (its DynamicUser= is not root, but
    # it serves every local user); the user unit does not.
    for label, s, execstart in (
            ("system", svc, INSTALLED_DAEMON + " --system"),
            ("user", usvc, INSTALLED_DAEMON)):
        check(f"{label} service: Type=notify, ExecStart={execstart}, "
              "SIGHUP reload, watchdog",
              s.get("Type") == ["notify"] and
              s.get("ExecStart") == [execstart] and
              "/bin/kill -HUP $MAINPID" in s.get("ExecReload", []) and
              s.get("WatchdogSec") == ["10s"])
        # A user namespace would hide the clients' uids and gids
        # (SO_PEERCRED), and a RuntimeDirectory= would delete the socket
        # file the socket unit created, at each stop.
        check(f"{label} service: no PrivateUsers=, no RuntimeDirectory=",
              "PrivateUsers" not in s and "RuntimeDirectory" not in s)


# ---- man pages ----

def test_render():
    groff = shutil.which("groff")
    man = shutil.which("man")
    mandoc = shutil.which("mandoc")
    for page in PAGES:
        path = os.path.join(MAN, page)
        if not os.path.isfile(path):
            check(f"{page} exists", False)
            continue
        if groff:
            rc, out, err = run(["groff", "-mandoc", "-Tutf8", "-ww", "-z",
                                path])
            check(f"{page}: groff -ww renders it without a warning",
                  rc == 0 and not err.strip(), err)
        else:
            skip(f"{page}: groff -ww", "groff is not installed")
        if man:
            rc, out, err = run(["man", "-l", path],
                               env=dict(os.environ, MANWIDTH="80",
                                        MANPAGER="cat", PAGER="cat"))
            check(f"{page}: man -l renders it without a warning",
                  rc == 0 and not err.strip() and "NAME" in out, err)
        else:
            skip(f"{page}: man -l", "man is not installed")
        if mandoc:
            rc, out, err = run(["mandoc", "-T", "lint", "-W", "warning",
                                path])
            check(f"{page}: mandoc -T lint finds nothing",
                  rc == 0 and not (out + err).strip(), out + err)
        else:
            skip(f"{page}: mandoc -T lint", "mandoc is not installed")


def test_procregd_page(dhelp):
    text = render("procregd.8")
    if text is None:
        skip("procregd(8) against procregd --help",
             "neither groff nor mandoc is installed")
        return None
    helped = help_options(dhelp)
    documented = item_options(man_section(text, "DESCRIPTION"))
    for short, name, rest in helped:
        check(f"procregd(8) documents --{name}" +
              (f" (-{short})" if short else ""),
              name in documented and documented[name] == short,
              f"documented as {documented.get(name, 'nothing')!r}")
    extra = sorted(set(documented) - {n for s, n, r in helped})
    check("procregd(8) documents no option that --help lacks", not extra,
          " ".join("--" + e for e in extra))
    # The defaults in the page are the ones --help prints.
    lines = man_section(text, "DESCRIPTION")
    for name, dflt in help_defaults(dhelp, numeric=True).items():
        body = ""
        for i, line in enumerate(lines):
            if re.match(r"^ +--" + re.escape(name) + r"\b", line):
                body = " ".join(lines[i:i + 3])
                break
        check(f"procregd(8) gives --{name}'s default {dflt}",
              re.search(r"default " + dflt + r"\b", body) is not None, body)
    status = " ".join(man_section(text, "EXIT STATUS"))
    check("procregd(8) documents exit statuses 0, 1 and 2",
          all(re.search(rf"(^|\s){c}\s", status) for c in "012"), status)
    env = " ".join(man_section(text, "ENVIRONMENT"))
    for var in ("PROCREG_SOCKET", "XDG_RUNTIME_DIR", "NOTIFY_SOCKET",
                "WATCHDOG_USEC", "LISTEN_FDS", "JOURNAL_STREAM"):
        check(f"procregd(8) documents ${var}", var in env)
    return text


def test_procregctl_page(chelp, cmd_helps):
    text = render("procregctl.1")
    if text is None:
        skip("procregctl(1) against procregctl --help",
             "neither groff nor mandoc is installed")
        return
    commands = [re.match(r"^\s+(\w+)", l).group(1)
                for l in help_section(chelp, "Commands:")]
    common = {n for s, n, r in help_options(chelp)}
    # The page's Commands subsection, one block per command.
    blocks, current = {}, None
    for line in man_section(text, "Commands"):
        m = re.match(r"^ {5}(\w+)(\s|$)", line)
        if m and m.group(1) in commands:
            current = m.group(1)
            blocks[current] = []
        elif re.match(r"^ {5}\S", line):
            current = None
        if current:
            blocks[current].append(line)
    check("procregctl(1) documents the commands of --help, in order",
          [c for c in blocks if c in commands] == commands and
          set(blocks) <= set(commands),
          f"page {list(blocks)}, help {commands}")
    specific = {}
    for cmd in commands:
        opts = help_options(cmd_helps.get(cmd, ""))
        specific[cmd] = {(s, n) for s, n, r in opts if n not in common}
    every_specific = {n for v in specific.values() for s, n in v}
    for cmd in commands:
        block = "\n".join(blocks.get(cmd, []))
        mine = {n for s, n in specific[cmd]}
        missing = [n for s, n in specific[cmd]
                   if not mentions_option(block, s, n)]
        strays = sorted(n for n in every_specific - mine
                        if mentions_option(block, None, n))
        check(f"procregctl(1) {cmd}: its own options, no other command's",
              cmd in blocks and not missing and not strays,
              f"missing {missing}, others' {strays}")
    helped = {}
    for t in [chelp] + list(cmd_helps.values()):
        for s, n, r in help_options(t):
            helped[n] = s
    documented = item_options(text.splitlines())
    check("procregctl(1) has an item for each option of every --help, "
          "with its short form", all(documented.get(n, "?") == s
                                     for n, s in helped.items()),
          f"help {helped}, page {documented}")
    check("procregctl(1) has no item for an option --help lacks",
          set(documented) <= set(helped),
          " ".join(sorted(set(documented) - set(helped))))

    # Exit statuses: the same codes with the same words.
    def statuses(lines):
        d = {}
        for line in lines:
            m = re.match(r"^\s+(\d+)\s+(\S.*)$", line)
            if m:
                words = m.group(2).lower().replace('"', "").rstrip(". ")
                d[m.group(1)] = " ".join(words.split())
        return d
    hs = statuses(help_section(chelp, "Exit status:"))
    ms = statuses(man_section(text, "EXIT STATUS"))
    check("procregctl(1) exit statuses match --help word for word",
          hs and hs == ms, f"help {hs}, page {ms}")
    status = " ".join(man_section(text, "EXIT STATUS"))
    check("procregctl(1) gives hold's statuses (CMD's, 128+N, 1, 127)",
          all(w in status for w in ("hold exits with", "128+N", "127")))


# ---- libprocreg(3) against include/procreg.h ----

def c_type(decl):
    """A C parameter or return type without its parameter name, spaces
    normalised: "const char *const *names" -> "const char*const*"."""
    decl = " ".join(decl.split())
    m = re.match(r"^(.*[\s*])([A-Za-z_]\w*)$", decl)
    if m and m.group(1).strip() not in ("", "const", "struct", "enum",
                                        "unsigned", "signed"):
        decl = m.group(1)
    return re.sub(r"\s*\*\s*", "*", decl).strip()


def c_signature(ret, params):
    """(return type, (parameter types...)) for comparing prototypes."""
    return (c_type(ret), tuple(c_type(p) for p in params.split(",")))


def header_api():
    """{function: signature} of the PROCREG_API declarations of procreg.h,
    and [(status, number)] of its enum procreg_status."""
    with open(HEADER) as f:
        text = re.sub(r"/\*.*?\*/", " ", f.read(), flags=re.S)
    funcs = {}
    for m in re.finditer(r"^PROCREG_API\s+([^;(]*?)\(?\b(procreg_\w+)\)?"
                         r"\s*\(([^;]*?)\)\s*;", text, re.M | re.S):
        funcs[m.group(2)] = c_signature(m.group(1), m.group(3))
    enum = re.search(r"enum procreg_status \{(.*?)\};", text, re.S)
    statuses = [(n, int(v)) for n, v in re.findall(
        r"\b(PROCREG_(?:OK|E_\w+))\s*=\s*(-?\d+)", enum.group(1) if enum
        else "")]
    return funcs, statuses


def page_prototypes(lines):
    """{function: signature} of the prototypes in rendered SYNOPSIS lines:
    the return type on its line, then NAME(parameters); wrapped."""
    protos = {}
    prev, i = "", 0
    while i < len(lines):
        line = lines[i].strip()
        m = re.match(r"^(procreg_\w+)\((.*)$", line)
        if m:
            name, rest = m.group(1), m.group(2)
            while not rest.endswith(");") and i + 1 < len(lines):
                i += 1
                rest += " " + lines[i].strip()
            protos[name] = c_signature(prev, rest[:-2])
        if line:
            prev = line
        i += 1
    return protos


def example_sources():
    """The C programs of libprocreg(3)'s EXAMPLES (the literal blocks that
    start with #include), unescaped from the page's source."""
    with open(os.path.join(MAN, "libprocreg.3")) as f:
        src = f.read()
    part = src.split("\n.Sh EXAMPLES\n", 1)[-1].split("\n.Sh ", 1)[0]
    blocks = re.findall(r"^\.Bd -literal[^\n]*\n(.*?)^\.Ed$", part,
                        re.M | re.S)
    return [b.replace("\\e", "\\").replace("\\&", "").replace("\\-", "-")
            for b in blocks if b.startswith("#include")]


def sanitized_library():
    """Whether the build tree's libprocreg was built with SANITIZE=1 (then
    a program linked with it needs the sanitizers' runtime too)."""
    if os.environ.get("PROCREG_SANITIZED") == "1":
        return True
    try:
        with open(os.path.join(ROOT, "src", "lib", "libprocreg.so"),
                  "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


def build_c(tmp, name, code):
    """Build code against the build tree's libprocreg, as the page says
    (pkg-config with PKG_CONFIG_PATH=src/lib); (executable or None, the
    compiler's complaint)."""
    src = os.path.join(tmp, name + ".c")
    exe = os.path.join(tmp, name)
    with open(src, "w") as f:
        f.write(code)
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(ROOT, "src", "lib"))
    rc, flags, err = run(["pkg-config", "--cflags", "--libs", "procreg"],
                         env=env)
    if rc != 0:
        return None, f"pkg-config: {err}"
    san = ["-fsanitize=address,undefined"] if sanitized_library() else []
    rc, out, err = run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror"] +
                       san + ["-o", exe, src] + flags.split(), env=env,
                       timeout=120)
    return (exe if rc == 0 else None), out + err


def run_examples(tmp, service, client):
    """Start a daemon, the service example, and the client example until
    it prints the service's answer; True when it did."""
    sock = os.path.join(tmp, "lib3.sock")
    env = dict(os.environ, PROCREG_SOCKET=sock)
    procs = []
    try:
        procs.append(subprocess.Popen([DAEMON, "-q"], env=env,
                                      stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 30
        while not os.path.exists(sock) and time.monotonic() < deadline:
            time.sleep(0.05)
        procs.append(subprocess.Popen([service], env=env,
                                      stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        out = err = ""
        while time.monotonic() < deadline:
            rc, out, err = run([client], env=env, timeout=30)
            if rc == 0:
                break
            time.sleep(0.1)
        return check("libprocreg(3): the example client gets the example "
                     "service's answer", rc == 0 and out == '"hi"\n',
                     f"exit {rc}: {out}{err}")
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def test_library_page(tmp):
    text = render("libprocreg.3")
    if text is None:
        skip("libprocreg(3) against procreg.h",
             "neither groff nor mandoc is installed")
        return
    funcs, statuses = header_api()
    check("procreg.h: PROCREG_API functions and enum procreg_status found",
          len(funcs) > 50 and len(statuses) > 15,
          f"{len(funcs)} functions, {len(statuses)} statuses")
    protos = page_prototypes(man_section(text, "SYNOPSIS"))
    missing = sorted(set(funcs) - set(protos))
    extra = sorted(set(protos) - set(funcs))
    check("libprocreg(3) SYNOPSIS has every PROCREG_API function of "
          "procreg.h", not missing, " ".join(missing))
    check("libprocreg(3) SYNOPSIS has no function procreg.h lacks",
          not extra, " ".join(extra))
    wrong = [f"{n}: page {protos[n]}, header {funcs[n]}"
             for n in sorted(set(funcs) & set(protos))
             if protos[n] != funcs[n]]
    check("libprocreg(3) SYNOPSIS gives each function the header's return "
          "and parameter types", not wrong, "; ".join(wrong))

    # RETURN VALUES: an item "NAME (N)" or "NAME (N, wire_name)" each.
    items = {}
    for line in man_section(text, "RETURN VALUES"):
        m = re.match(r"^\s+(PROCREG_\w+) \((-?\d+)(?:, (\w+))?\)\s*$", line)
        if m:
            items[m.group(1)] = (int(m.group(2)), m.group(3))
    for name, value in statuses:
        check(f"libprocreg(3) RETURN VALUES lists {name} ({value})",
              name in items and items[name][0] == value,
              f"listed as {items.get(name)}")
    check("libprocreg(3) RETURN VALUES lists no status procreg.h lacks",
          set(items) <= {n for n, v in statuses},
          " ".join(sorted(set(items) - {n for n, v in statuses})))

    if shutil.which("cc") is None or shutil.which("pkg-config") is None:
        skip("libprocreg(3): wire names and EXAMPLES built",
             "cc or pkg-config is not installed")
        return
    if not os.path.exists(os.path.join(ROOT, "src", "lib",
                                       "procreg-uninstalled.pc")):
        check("libprocreg is built (src/lib/procreg-uninstalled.pc)", False)
        return
    # The wire names, as the library itself maps the statuses.
    code = "#include <procreg.h>\n#include <stdio.h>\nint\nmain(void)\n{\n"
    for name, value in statuses:
        code += (f'\tprintf("{name} %s\\n", procreg_status_code({name}) ? '
                 f'procreg_status_code({name}) : "-");\n')
    exe, err = build_c(tmp, "status_codes", code + "\treturn 0;\n}\n")
    if check("a program printing procreg_status_code() builds", exe, err):
        rc, out, err = run([exe])
        codes = dict(l.split() for l in out.splitlines() if l.strip())
        wrong = [f"{n}: page {items[n][1]}, library {codes.get(n)}"
                 for n, v in statuses if n in items and
                 (items[n][1] or "-") != codes.get(n)]
        check("libprocreg(3) RETURN VALUES gives each daemon status the wire "
              "name procreg_status_code() gives, and none to the others",
              rc == 0 and len(codes) == len(statuses) and not wrong,
              f"exit {rc}: {'; '.join(wrong)}{err}")

    examples = example_sources()
    if not check("libprocreg(3) EXAMPLES: a service and a client program",
                 len(examples) == 2, f"{len(examples)} programs"):
        return
    built = []
    for i, code in enumerate(examples):
        exe, err = build_c(tmp, f"lib3-example{i + 1}", code)
        check(f"libprocreg(3) example {i + 1} builds with -Wall -Wextra "
              "-Werror against the build tree", exe, err)
        built.append(exe)
    if all(built):
        run_examples(tmp, *built)


# ---- the configuration file ----

# Keys whose option is not named after them.
KEY_OF = {"policy-default": "default"}
OPTION_OF = {v: k for k, v in KEY_OF.items()}


def conf_lines():
    """[(line number, section, key, value, commented)] of conf/procreg.conf,
    and the lines that are none of blank, comment, section or key."""
    keys, bad = [], []
    section = ""
    with open(CONF) as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            m = re.match(r"^\[([a-z]+)\]$", line)
            if m:
                section = m.group(1)
                continue
            m = re.match(r"^(#?)([a-z_]+) = (\S.*)$", line)
            if m:
                keys.append((n, section, m.group(2), m.group(3),
                             m.group(1) == "#"))
                continue
            if line.startswith("#"):
                continue
            bad.append((n, line))
    return keys, bad


def test_conf(dhelp, conf_page):
    keys, bad = conf_lines()
    check("procreg.conf: every line is blank, a comment, a section or "
          "'key = value' at column 0 (no comment after a value)", not bad,
          repr(bad))
    opts = {n for s, n, r in help_options(dhelp)}
    want = {KEY_OF.get(n, n.replace("-", "_")) for n in opts - CLI_ONLY}
    have = {k for n, s, k, v, c in keys}
    check("procreg.conf has every key that --help has an option for, and "
          "no other", have == want,
          f"missing {sorted(want - have)}, unknown {sorted(have - want)}")
    check("procreg.conf: sections [daemon], [limits], [policy] and "
          "[cluster] only",
          {s for n, s, k, v, c in keys} ==
          {"daemon", "limits", "policy", "cluster"})
    # Commented out: the keys whose default depends on how procregd runs
    # (the socket's, and the per-user caps and reserved connections, which
    # differ for root or --system), so that the installed file changes nothing,
    # metrics (off unless given an address), the policy's examples, and
    # the cluster's etcd (off unless given), node (the host name's) and
    # TLS files (none; an error without an https:// etcd).
    check("procreg.conf: only socket, socket_mode, socket_group, "
          "max_conns_per_uid, max_names_per_uid, reserved_conns, metrics, "
          "the policy's examples, etcd, node and the etcd TLS files "
          "commented out",
          {k for n, s, k, v, c in keys if c} ==
          {"socket", "socket_mode", "socket_group", "max_conns_per_uid",
           "max_names_per_uid", "reserved_conns", "metrics", "rule",
           "admin_group", "etcd", "node", "etcd_ca", "etcd_cert",
           "etcd_key"})
    defaults = help_defaults(dhelp)
    for n, s, k, v, c in keys:
        if c:
            continue
        d = defaults.get(OPTION_OF.get(k, k.replace("_", "-")))
        check(f"procreg.conf: {k} = {v} is the default of --help",
              d == v, f"--help says {d}")
    if conf_page is not None:
        doc = set()
        for line in conf_page.splitlines():
            m = re.match(r"^ {5}([a-z_]+) = ", line)
            if m:
                doc.add(m.group(1))
        check("procreg.conf(5) documents exactly the keys of procreg.conf",
              doc == have, f"page {sorted(doc)}, file {sorted(have)}")
        for sec in ("daemon", "limits", "policy", "cluster"):
            sec_keys = {k for n, s, k, v, c in keys if s == sec}
            body = man_section(conf_page, f"The [{sec}] section")
            got = {m.group(1) for l in body
                   for m in [re.match(r"^ {5}([a-z_]+) = ", l)] if m}
            check(f"procreg.conf(5) puts the keys of [{sec}] in its "
                  "section", got == sec_keys, f"{sorted(got)}")
        lines = conf_page.splitlines()
        for k, d in help_defaults(dhelp, numeric=True).items():
            key = k.replace("-", "_")
            body = ""
            for i, line in enumerate(lines):
                if line.startswith(f"     {key} = "):
                    body = " ".join(lines[i:i + 3])
                    break
            check(f"procreg.conf(5) gives {key}'s default {d}",
                  re.search(r"default " + d + r"\b", body) is not None, body)
    else:
        skip("procreg.conf(5) against procreg.conf",
             "neither groff nor mandoc is installed")

    if "--check-config" not in dhelp:
        skip("procregd --check-config on procreg.conf",
             "this procregd has no --check-config")
        return
    rc, out, err = run([DAEMON, "--check-config", "-c", CONF], timeout=30)
    check("procregd --check-config accepts procreg.conf",
          rc == 0 and out.strip() == f"{CONF}: ok" and not err.strip(),
          f"exit {rc}: {out}{err}")
    with open(CONF) as f:
        text = f.read()
    with tempfile.TemporaryDirectory(prefix="procreg-units.") as tmp:
        on = os.path.join(tmp, "socket.conf")
        with open(on, "w") as f:
            f.write(re.sub(r"(?m)^#(socket(_mode)? = )", r"\1", text))
        rc, out, err = run([DAEMON, "--check-config", "-c", on], timeout=30)
        check("procregd --check-config accepts it with socket and "
              "socket_mode set", rc == 0, f"exit {rc}: {out}{err}")
        bad = os.path.join(tmp, "trailing.conf")
        with open(bad, "w") as f:
            f.write(text.replace("\ndrain_ms = 2000\n",
                                 "\ndrain_ms = 2000 # ms\n"))
        line = text[:text.index("\ndrain_ms = 2000\n") + 1].count("\n") + 1
        rc, out, err = run([DAEMON, "--check-config", "-c", bad], timeout=30)
        check("procregd --check-config refuses a comment after a value "
              "(FILE:LINE:, exit 2)",
              rc == 2 and err.startswith(f"{bad}:{line}: "),
              f"exit {rc}: {err}")


def main():
    rc, dhelp, err = run([DAEMON, "--help"], timeout=30)
    check("procregd --help", rc == 0 and "--socket" in dhelp, err)
    rc, chelp, err = run([CTL, "--help"], timeout=30)
    check("procregctl --help", rc == 0 and "Commands:" in chelp, err)
    cmd_helps = {}
    for line in help_section(chelp, "Commands:"):
        cmd = line.split()[0]
        rc, out, err = run([CTL, cmd, "--help"], timeout=30)
        check(f"procregctl {cmd} --help", rc == 0 and out.startswith(
            f"usage: procregctl {cmd}"), err)
        cmd_helps[cmd] = out
    tmp = tempfile.mkdtemp(prefix="procreg-units.")
    try:
        test_units(tmp)
        test_render()
        test_procregd_page(dhelp)
        test_procregctl_page(chelp, cmd_helps)
        test_library_page(tmp)
        test_conf(dhelp, render("procreg.conf.5"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if skips:
        print(f"skipped {results['skipped']}: " + "; ".join(skips))
    print(f"units: {results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
