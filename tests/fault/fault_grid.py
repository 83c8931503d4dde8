#!/usr/bin/env python3
"""
NAME
    fault_grid.py - store operations with EIO, ENOSPC or SIGKILL injected at
    their Kth system call of each kind, each checked from a fresh process

SYNOPSIS
    fault_grid.py [--quick] [--driver PATH] [--jobs N] [--ops put,get,...]
                  [--faults EIO,ENOSPC,SIGKILL] [--classes write,read,...]
                  [--keep DIR] [--report FILE] [--show N]

DESCRIPTION
    Each cell is one operation (put, get, take, delete, sweep, compact,
    rebuild: see fault_driver.c) x one fault x one system call kind x K:
      1. a copy of a store made once by "fault_driver prepare";
      2. "fault_driver op" under
           strace -f -qq -e trace=CALL --inject=CALL:error=EIO:when=P+K
         (SIGKILL: --inject=CALL:signal=KILL:when=P+K), where P is the number
         of CALL calls the driver makes before the operation starts (the
         dynamic loader's); the trace shows that the fault was injected;
      3. "fault_driver check" from a fresh process: the store opens, no
         wrong record, every acknowledged record is there unless a log line
         says records were lost and names the file where the data went;
      4. the fault cleared: "fault_driver op ... 2" without strace (and if
         any of its calls failed, "op ... 3" after RETRY_WAIT seconds, for a
         store that waits before it retries a repair) must succeed in every
         call, and a second check must pass; a call of the first check that
         returned an error counts only then (errors right after a fault
         are allowed, errors after it cleared are not).
    The kinds and the number of calls of each kind an operation makes are
    counted first with one traced run without faults (which must pass its
    check too).  The full grid injects at every call (K = 1..N); --quick
    at K in {1, 2, N/2, N-1, N}.  Before any cell, a self-test
    plants a wrong record, a silent loss and an intact store moved aside,
    and the check must catch each.  Cells run on --jobs
    processes (default 2), each in a fresh directory.

    Prints a table per operation and fault, then every failing cell: the
    operation, the call, K, the fault, the driver's exit status, the calls
    that failed, the store's log, the check's findings and the files left.

EXIT STATUS
    0 if no cell had a silent loss, a wrong or resurrected record, a store
    that did not open (or opened but could not be used), an intact store
    moved aside, a store that did not work again after the fault cleared,
    or a harness problem (driver crashed, fault not injected, check did not
    run); 1 otherwise; 77 (skip) if strace is missing or may not trace.
"""
import argparse
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

OPS = ['put', 'get', 'take', 'delete', 'sweep', 'compact', 'rebuild']
FAULTS = ['EIO', 'ENOSPC', 'SIGKILL']
CLASSES = ['write', 'pwrite64', 'read', 'pread64', 'lseek', 'fsync',
           'fdatasync', 'rename', 'renameat', 'renameat2', 'ftruncate',
           'openat', 'unlink', 'link', 'linkat', 'fallocate', 'newfstatat',
           'fstat', 'flock']
MARKS = ['access', 'faccessat', 'faccessat2']
PREPARE_N = 60
TIMEOUT = 120
RETRY_WAIT = 1.2	# seconds: longer than the store's repair retry interval
SANITIZER_EXIT = 86

# What fails a cell (and the run), and what is only counted.
FAILING = ['silent', 'wrong', 'resurrected', 'openfail', 'unusable',
           'intact_aside', 'stuck', 'crash', 'noinject', 'nocheck']


def die(msg, status=1):
    print('fault_grid: ' + msg, flush=True)
    sys.exit(status)


def find_driver(arg):
    if arg:
        return arg
    top = os.environ.get('SESSDB_TOP_BUILDDIR')
    if top:
        return os.path.join(top, 'tests', 'fault_driver')
    die('no --driver and no SESSDB_TOP_BUILDDIR', 2)


def probe_strace():
    """Skip (77) unless strace exists, may ptrace, and can inject."""
    strace = shutil.which('strace')
    if strace is None:
        die('SKIP: strace is not installed (apt-get install strace)', 77)
    true = shutil.which('true') or '/bin/true'
    echo = shutil.which('echo') or '/bin/echo'
    p = subprocess.run([strace, '-qq', '-o', '/dev/null', true],
                       capture_output=True, text=True)
    if p.returncode != 0:
        die('SKIP: strace may not trace here (ptrace refused?): ' +
            (p.stderr.strip() or 'exit %d' % p.returncode), 77)
    p = subprocess.run([strace, '-qq', '-o', '/dev/null',
                        '--inject=write:error=EIO:when=1', echo, 'x'],
                       capture_output=True, text=True)
    if p.returncode == 0:
        die('SKIP: strace --inject had no effect (strace too old?)', 77)
    return strace


def run(cmd, out, err, timeout=TIMEOUT, env=None):
    with open(out, 'w') as fo, open(err, 'w') as fe:
        try:
            return subprocess.run(cmd, stdout=fo, stderr=fe, env=env,
                                  timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            return 'timeout'


def read(path):
    try:
        with open(path, errors='replace') as f:
            return f.read()
    except OSError:
        return ''


def parse_result(text):
    for line in text.splitlines():
        if line.startswith('RESULT '):
            return dict(kv.split('=', 1) for kv in line.split()[1:])
    return None


def fresh_store(tmpl, cell):
    store = os.path.join(cell, 'store')
    os.makedirs(store)
    for name in ('db', 'db.lock'):
        shutil.copy2(os.path.join(tmpl, name), os.path.join(store, name))
    return os.path.join(store, 'db')


def count_calls(ctx, op):
    """One traced run without faults: (calls before the op, calls of the
    op) per kind; the run must succeed and pass its check."""
    cell = os.path.join(ctx.work, 'count-' + op)
    db = fresh_store(ctx.tmpl, cell)
    trace = os.path.join(cell, 'trace')
    cmd = [ctx.strace, '-f', '-qq', '-o', trace,
           '-e', 'trace=' + ','.join(CLASSES + MARKS),
           ctx.driver, 'op', db, op]
    rc = run(cmd, os.path.join(cell, 'op1.out'), os.path.join(cell, 'op1.log'),
             env=ctx.traced_env)
    if rc != 0:
        die('%s: the traced run without faults exited %s:\n%s' %
            (op, rc, read(os.path.join(cell, 'op1.log'))))
    before, during, state = {}, {}, 0
    for line in read(trace).splitlines():
        if 'sessdb-fault-mark-begin' in line:
            state = 1
            continue
        if 'sessdb-fault-mark-end' in line:
            state = 2
            continue
        m = re.match(r'(?:\d+\s+)?(\w+)\(', line)
        if not m or m.group(1) not in CLASSES:
            continue
        c = m.group(1)
        if state == 0:
            before[c] = before.get(c, 0) + 1
        elif state == 1:
            during[c] = during.get(c, 0) + 1
    if state != 2:
        die('%s: the marks were not seen in the trace' % op)
    expected = os.path.join(cell, 'expected')
    with open(expected, 'w') as f:
        f.write(ctx.prepared + read(os.path.join(cell, 'op1.out')))
    rc = run([ctx.driver, 'check', db, expected, os.path.join(cell, 'op1.log')],
             os.path.join(cell, 'check.out'), os.path.join(cell, 'check.log'))
    res = parse_result(read(os.path.join(cell, 'check.out')))
    if rc != 0 or res is None or res.get('pass') != '1':
        die('%s: the check after a run without faults failed:\n%s' %
            (op, read(os.path.join(cell, 'check.out'))))
    shutil.rmtree(cell)
    return before, during


def self_test(ctx):
    """The check must catch a wrong record, a silent loss and an intact
    store moved aside, or no cell's pass means anything."""
    want = {'wrong': 'wrong', 'lose': 'lost', 'aside': 'aside_intact'}
    for kind, key in want.items():
        cell = os.path.join(ctx.work, 'selftest-' + kind)
        db = fresh_store(ctx.tmpl, cell)
        p = subprocess.run([ctx.driver, 'plant', db, kind])
        if p.returncode != 0:
            die('self-test: plant %s failed' % kind)
        expected = os.path.join(cell, 'expected')
        with open(expected, 'w') as f:
            f.write(ctx.prepared)
        rc = run([ctx.driver, 'check', db, expected],
                 os.path.join(cell, 'check.out'), os.path.join(cell, 'check.log'))
        res = parse_result(read(os.path.join(cell, 'check.out')))
        if rc != 1 or res is None or res.get('pass') != '0' or \
                int(res.get(key, '0')) == 0:
            die('self-test: the check did not catch "%s":\n%s' %
                (kind, read(os.path.join(cell, 'check.out'))))
        shutil.rmtree(cell)


def ks_for(n, quick):
    if not quick:
        return list(range(1, n + 1))
    return sorted({k for k in (1, 2, (n + 1) // 2, n - 1, n) if 1 <= k <= n})


def run_cell(ctx, idx, op, fault, call, pre, k):
    cell = os.path.join(ctx.work, 'cell-%05d' % idx)
    db = fresh_store(ctx.tmpl, cell)
    f = lambda name: os.path.join(cell, name)
    r = {'op': op, 'fault': fault, 'call': call, 'k': k, 'dir': cell,
         'flags': set(), 'info': set()}
    if fault == 'SIGKILL':
        inject = '%s:signal=KILL:when=%d' % (call, pre + k)
    else:
        inject = '%s:error=%s:when=%d' % (call, fault, pre + k)
    cmd = [ctx.strace, '-f', '-qq', '-o', f('trace'), '-e', 'trace=' + call,
           '--inject=' + inject, ctx.driver, 'op', db, op]
    r['cmd'] = ' '.join(cmd)
    rc1 = run(cmd, f('op1.out'), f('op1.log'), env=ctx.traced_env)
    r['rc1'] = rc1
    trace = read(f('trace'))
    if fault == 'SIGKILL':
        if rc1 != -9 or 'killed by SIGKILL' not in trace:
            r['flags'].add('noinject')
    else:
        if '(INJECTED)' not in trace:
            r['flags'].add('noinject')
        if rc1 not in (0, 1, 3):	# 3: the store did not open under the fault
            r['flags'].add('crash')
    with open(f('expected1'), 'w') as fo:
        fo.write(ctx.prepared + read(f('op1.out')))
    rcc1 = run([ctx.driver, 'check', db, f('expected1'), f('op1.log')],
               f('check1.out'), f('check1.log'), env=ctx.env)
    res1 = parse_result(read(f('check1.out')))
    # The fault cleared: the same operation on other keys, then puts.  A
    # store may make writes wait a while after a failed repair (a retry
    # interval): if round 2 had failures, wait RETRY_WAIT and run round 3,
    # which must succeed in every call.
    rc2 = run([ctx.driver, 'op', db, op, '2'], f('op2.out'), f('op2.log'),
              env=ctx.env)
    if rc2 not in (0, 1, 3):
        r['flags'].add('crash')
    r['rc2'] = rc2
    outs = read(f('op1.out')) + read(f('op2.out'))
    logs = [f('op1.log'), f('check1.log'), f('op2.log')]
    if rc2 != 0:
        r['info'].add('waited')
        time.sleep(RETRY_WAIT)
        rc2 = run([ctx.driver, 'op', db, op, '3'], f('op3.out'), f('op3.log'),
                  env=ctx.env)
        if rc2 not in (0, 1, 3):
            r['flags'].add('crash')
        r['rc2'] = '%s, after %.1f s %s' % (r['rc2'], RETRY_WAIT, rc2)
        outs += read(f('op3.out'))
        logs.append(f('op3.log'))
    with open(f('expected2'), 'w') as fo:
        fo.write(ctx.prepared + outs)
    rcc2 = run([ctx.driver, 'check', db, f('expected2')] + logs,
               f('check2.out'), f('check2.log'), env=ctx.env)
    res2 = parse_result(read(f('check2.out')))
    if res1 is None or res2 is None:
        r['flags'].add('nocheck')
    # A check exits 0 exactly when it passed, 1 when it failed: anything
    # else (a sanitizer, a crash after its result) is a crash.
    for rcc, res in ((rcc1, res1), (rcc2, res2)):
        if res is not None and rcc != (0 if res.get('pass') == '1' else 1):
            r['flags'].add('crash')
    if rc2 != 0:
        r['flags'].add('stuck')
    for res in (res1, res2):
        if res is None:
            continue
        n = lambda key: int(res.get(key, '0'))
        if n('lost') > 0:
            r['flags' if n('logged') == 0 else 'info'].add(
                'silent' if n('logged') == 0 else 'logged')
        for key, flag in (('wrong', 'wrong'), ('resurrected', 'resurrected'),
                          ('openfail', 'openfail'),
                          ('aside_intact', 'intact_aside')):
            if n(key) > 0:
                r['flags'].add(flag)
    # A call that fails right after the fault is no verdict (the store
    # may still be waiting to retry a repair); after it cleared it is.
    if res1 is not None and int(res1.get('unusable', '0')) > 0:
        r['info'].add('errors_at_once')
    if res2 is not None and int(res2.get('unusable', '0')) > 0:
        r['flags'].add('unusable')
        for key in ('aside', 'strays_after', 'inflight_lost', 'bad'):
            if n(key) > 0:
                r['info'].add(key)
    r['res1'], r['res2'] = res1, res2
    if r['flags']:
        r['detail'] = describe(r, f)
    if not r['flags'] and not ctx.keep:
        shutil.rmtree(cell)
    return r


def describe(r, f):
    """What a failing cell did, for the report."""
    lines = ['%s %s at %s #%d: %s' % (r['op'], r['fault'], r['call'], r['k'],
                                      ', '.join(sorted(r['flags'])))]
    lines.append('  op exit %s; after the fault cleared: exit %s' %
                 (r['rc1'], r['rc2']))
    for name, label in (('op1.out', 'op'), ('op2.out', 'op round 2'),
                        ('op3.out', 'op round 3')):
        fails = [l for l in read(f(name)).splitlines()
                 if l.startswith(('FAIL', 'OPENFAIL', 'WRONG'))]
        for l in fails[:4]:
            lines.append('  %s: %s' % (label, l))
        if len(fails) > 4:
            lines.append('  %s: ... %d more failed calls' % (label, len(fails) - 4))
    for name, label in (('op1.log', 'log'), ('check1.log', 'check log'),
                        ('op2.log', 'log round 2'), ('op3.log', 'log round 3')):
        logl = read(f(name)).splitlines()
        for l in logl[:6]:
            lines.append('  %s: %s' % (label, l))
        if len(logl) > 6:
            lines.append('  %s: ... %d more lines' % (label, len(logl) - 6))
    for name, label in (('check1.out', 'check'), ('check2.out', 'check 2')):
        out = read(f(name)).splitlines()
        probs = [l for l in out if not l.startswith('RESULT')]
        for l in probs[:6]:
            lines.append('  %s: %s' % (label, l))
        if len(probs) > 6:
            lines.append('  %s: ... %d more' % (label, len(probs) - 6))
        res = [l for l in out if l.startswith('RESULT')]
        lines.append('  %s: %s' % (label, res[0] if res else 'NO RESULT'))
    try:
        left = sorted(os.listdir(os.path.join(r['dir'], 'store')))
    except OSError:
        left = []
    lines.append('  files: ' + ' '.join(left))
    return '\n'.join(lines)


COLUMNS = [
    ('cells', lambda r: True),
    ('ok', lambda r: not r['flags']),
    ('silent', lambda r: 'silent' in r['flags']),
    ('logged', lambda r: 'logged' in r['info']),
    ('intact_aside', lambda r: 'intact_aside' in r['flags']),
    ('wrong', lambda r: bool(r['flags'] & {'wrong', 'resurrected'})),
    ('openfail', lambda r: 'openfail' in r['flags']),
    ('errors', lambda r: 'unusable' in r['flags']),
    ('stuck', lambda r: 'stuck' in r['flags']),
    ('waited', lambda r: 'waited' in r['info']),
    ('crash', lambda r: 'crash' in r['flags']),
    ('harness', lambda r: bool(r['flags'] & {'noinject', 'nocheck'})),
    ('aside', lambda r: 'aside' in r['info']),
    ('strays', lambda r: 'strays_after' in r['info']),
]


def table(results, ops, faults):
    """Cells per op and fault, and how many of them had each outcome."""
    w = {c: max(6, len(c) + 1) for c, _ in COLUMNS}
    head = '%-8s %-8s' % ('op', 'fault') + ''.join(
        c.rjust(w[c]) for c, _ in COLUMNS)
    out = [head, '-' * len(head)]
    totals = dict.fromkeys([c for c, _ in COLUMNS], 0)
    for op in ops:
        for fault in faults:
            rs = [r for r in results if r['op'] == op and r['fault'] == fault]
            if not rs:
                continue
            row = {c: sum(1 for r in rs if fn(r)) for c, fn in COLUMNS}
            for c in row:
                totals[c] += row[c]
            out.append('%-8s %-8s' % (op, fault) + ''.join(
                str(row[c]).rjust(w[c]) for c, _ in COLUMNS))
    out.append('-' * len(head))
    out.append('%-17s' % 'total' + ''.join(
        str(totals[c]).rjust(w[c]) for c, _ in COLUMNS))
    return '\n'.join(out), totals


def ranges(ks):
    """1,2,3,7,9,10 -> 1-3,7,9-10"""
    out, ks = [], sorted(ks)
    i = 0
    while i < len(ks):
        j = i
        while j + 1 < len(ks) and ks[j + 1] == ks[j] + 1:
            j += 1
        out.append(str(ks[i]) if i == j else '%d-%d' % (ks[i], ks[j]))
        i = j + 1
    return ','.join(out)


def group_failures(failing):
    """Failing cells of one op, fault, call and outcome, with their Ks."""
    groups = {}
    for r in failing:
        rc = r['rc1']
        key = (r['op'], r['fault'], r['call'], tuple(sorted(r['flags'])))
        g = groups.setdefault(key, {'op': r['op'], 'fault': r['fault'],
                                    'call': r['call'], 'flags': key[3],
                                    'ks': [], 'rcs': [], 'first': r})
        g['ks'].append(r['k'])
        if rc not in g['rcs']:
            g['rcs'].append(rc)
    return list(groups.values())


class Ctx:
    pass


def main():
    ap = argparse.ArgumentParser(description='fault-injection grid for sessdb')
    ap.add_argument('--quick', action='store_true',
                    help='K in {1, 2, N/2, N-1, N} only')
    ap.add_argument('--driver', help='path of fault_driver')
    ap.add_argument('--jobs', type=int, default=2)
    ap.add_argument('--ops', default=','.join(OPS))
    ap.add_argument('--faults', default=','.join(FAULTS))
    ap.add_argument('--classes', help='only these call kinds')
    ap.add_argument('--keep', help='keep every cell directory under DIR')
    ap.add_argument('--report', help='write every failing cell to FILE')
    ap.add_argument('--show', type=int, default=60,
                    help='kinds of failure printed in full (default 60)')
    a = ap.parse_args()

    ops = [o for o in a.ops.split(',') if o]
    faults = [x for x in a.faults.split(',') if x]
    for o in ops:
        if o not in OPS:
            die('unknown op %s' % o, 2)
    for x in faults:
        if x not in FAULTS:
            die('unknown fault %s' % x, 2)
    classes = a.classes.split(',') if a.classes else CLASSES

    ctx = Ctx()
    ctx.strace = probe_strace()
    ctx.driver = find_driver(a.driver)
    if not os.access(ctx.driver, os.X_OK):
        die('%s is not an executable' % ctx.driver, 2)
    ctx.keep = a.keep
    # In a sanitized build an error must not pass for a failed call (exit
    # 1): sanitizers exit SANITIZER_EXIT, which no run of the driver uses.
    # LeakSanitizer stops the world with ptrace, which a traced process
    # cannot do: no leak check in the runs under strace (the others keep it).
    ctx.env = dict(os.environ)
    for var, extra in (('ASAN_OPTIONS', 'exitcode=%d' % SANITIZER_EXIT),
                       ('UBSAN_OPTIONS', 'halt_on_error=1:exitcode=%d' %
                        SANITIZER_EXIT)):
        ctx.env[var] = (os.environ.get(var, '') + ':' + extra).lstrip(':')
    ctx.traced_env = dict(ctx.env)
    ctx.traced_env['ASAN_OPTIONS'] += ':detect_leaks=0'
    if a.keep:
        os.makedirs(a.keep, exist_ok=True)
        ctx.work = tempfile.mkdtemp(prefix='fault-grid-', dir=a.keep)
    else:
        ctx.work = tempfile.mkdtemp(prefix='fault-grid-')
    ctx.tmpl = os.path.join(ctx.work, 'template')
    os.makedirs(ctx.tmpl)
    start = time.monotonic()

    p = subprocess.run([ctx.driver, 'prepare', os.path.join(ctx.tmpl, 'db'),
                        str(PREPARE_N)], capture_output=True, text=True)
    if p.returncode != 0:
        die('prepare failed: ' + p.stderr)
    ctx.prepared = p.stdout
    self_test(ctx)

    cells = []
    print('fault_grid: %s grid, ops %s, faults %s' %
          ('quick' if a.quick else 'full', ','.join(ops), ','.join(faults)),
          flush=True)
    for op in ops:
        before, during = count_calls(ctx, op)
        print('  %-8s calls: %s' % (op, ' '.join(
            '%s=%d' % (c, during[c]) for c in CLASSES if c in during)),
            flush=True)
        for fault in faults:
            for call in classes:
                n = during.get(call, 0)
                for k in ks_for(n, a.quick):
                    cells.append((op, fault, call, before.get(call, 0), k))

    results = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, a.jobs)) as ex:
        futs = [ex.submit(run_cell, ctx, i, *c) for i, c in enumerate(cells)]
        for fu in concurrent.futures.as_completed(futs):
            results.append(fu.result())
    elapsed = time.monotonic() - start
    order = {(o, x, c, k): i for i, (o, x, c, _, k) in enumerate(cells)}
    results.sort(key=lambda r: order[(r['op'], r['fault'], r['call'], r['k'])])

    text, totals = table(results, ops, faults)
    print()
    print(text)
    failing = [r for r in results if r['flags']]
    print()
    print('fault_grid: %d cells in %.0f s on %d jobs; %d failing cells' %
          (len(results), elapsed, a.jobs, len(failing)), flush=True)
    if failing:
        groups = group_failures(failing)
        print('\nfailing cells by kind (op fault call K...: what, driver exit):')
        for g in groups:
            print('  %s %s %s K=%s: %s (op exit %s)' % (
                g['op'], g['fault'], g['call'], ranges(g['ks']),
                ', '.join(g['flags']), '/'.join(str(x) for x in g['rcs'])))
        print('\nthe first cell of each kind in full (all in --report):\n')
        for g in groups[:a.show]:
            print(g['first']['detail'])
            print()
        if a.report:
            with open(a.report, 'w') as fo:
                fo.write(text + '\n\n')
                for g in groups:
                    fo.write('%s %s %s K=%s: %s (op exit %s)\n' % (
                        g['op'], g['fault'], g['call'], ranges(g['ks']),
                        ', '.join(g['flags']),
                        '/'.join(str(x) for x in g['rcs'])))
                fo.write('\n')
                for r in failing:
                    fo.write(r['detail'] + '\n\n')
        print('fault_grid: failing cells are kept under %s' % ctx.work)
    elif not a.keep:
        shutil.rmtree(ctx.work)
    if failing:
        print('FAILED: %d of %d cells' % (len(failing), len(results)))
        return 1
    print('PASSED: %d cells' % len(results))
    return 0


if __name__ == '__main__':
    sys.exit(main())
