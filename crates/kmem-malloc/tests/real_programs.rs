//! Real programs under libkmalloc, compared with the same run on the C
//! library's malloc: Python running a workload of its own, sqlite3 on a
//! generated database, git on a scratch repository, a bash script that
//! forks and writes through its own descriptors, and a C++ program with
//! `new`/`delete`, containers and threads.
//!
//! CI needs the tools: `apt-get install -y python3 sqlite3 git g++`.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

const PY_WORKLOAD: &str = r#"
import json, threading, collections, hashlib, re, random

random.seed(1234)
words = ["".join(random.choice("abcdefghij") for _ in range(random.randint(1, 12))) for _ in range(20000)]
counts = collections.Counter(words)
index = {}
for i, w in enumerate(words):
    index.setdefault(w[:3], []).append(i)
big = [{"id": i, "w": w, "tags": [w[::-1], w.upper()], "n": i * 0.5} for i, w in enumerate(words)]
text = json.dumps(big, sort_keys=True)
back = json.loads(text)
assert back == big
lines = sorted(text.split("},"), key=lambda s: (len(s), s))
s = "".join(w * 3 for w in words[:5000])
found = len(re.findall(r"a[bc]+d", s))
digest = hashlib.sha256(text.encode()).hexdigest()

results = {}
def worker(k):
    local = {}
    for i in range(30000):
        key = (i * 7919 + k) % 5000
        local[key] = local.get(key, "") + str(i % 10)
        if i % 3 == 0:
            local.pop((key * 31) % 5000, None)
    results[k] = sum(len(v) for v in local.values())
threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
for t in threads: t.start()
for t in threads: t.join()

grow = bytearray()
for i in range(200000):
    grow += bytes([i % 256])
print(len(counts), counts.most_common(3))
print(len(index), sum(len(v) for v in index.values()))
print(len(text), digest, len(lines), found)
print(sorted(results.items()))
print(len(grow), sum(grow) % 65521)
"#;

#[test]
fn python_workload() {
    if !need("python3") {
        return;
    }
    let dir = scratch("python");
    let script = dir.join("workload.py");
    std::fs::write(&script, PY_WORKLOAD).unwrap();
    same_output("python3 workload.py", || {
        let mut c = Command::new("python3");
        c.arg(&script);
        c
    });
}

#[test]
fn sqlite3_database() {
    if !need("sqlite3") {
        return;
    }
    let dir = scratch("sqlite");
    let mut sql = String::from(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, grp INTEGER, payload BLOB);\n\
         CREATE INDEX t_grp ON t(grp);\nBEGIN;\n",
    );
    for i in 0..20000u64 {
        let name: String = (0..(i % 17 + 3))
            .map(|k| (b'a' + ((i * 31 + k) % 26) as u8) as char)
            .collect();
        sql += &format!(
            "INSERT INTO t VALUES({i}, '{name}', {}, randomblob(0));\n",
            i % 97
        );
    }
    sql += "COMMIT;\n\
            UPDATE t SET payload = zeroblob(grp * 10) WHERE id % 3 = 0;\n\
            SELECT grp, count(*), sum(length(name)), sum(length(payload)) FROM t GROUP BY grp ORDER BY grp;\n\
            SELECT name, count(*) AS c FROM t GROUP BY name ORDER BY c DESC, name LIMIT 20;\n\
            WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r WHERE x < 50000) \
            SELECT count(*), sum(x) FROM r;\n\
            DELETE FROM t WHERE grp < 40;\nVACUUM;\nPRAGMA integrity_check;\n\
            SELECT count(*) FROM t;\n";
    let script = dir.join("script.sql");
    std::fs::write(&script, sql).unwrap();
    let run_sqlite = |db: &Path| {
        let _ = std::fs::remove_file(db);
        let mut c = Command::new("sqlite3");
        c.arg(db).arg(format!(".read {}", script.display()));
        c
    };
    let (a, b) = (dir.join("plain.db"), dir.join("kmem.db"));
    let plain = run(run_sqlite(&a), false, "");
    let kmem = run(run_sqlite(&b), true, "");
    assert!(plain.status.success() && kmem.status.success(), "{kmem:?}");
    assert_eq!(
        String::from_utf8_lossy(&plain.stdout),
        String::from_utf8_lossy(&kmem.stdout)
    );
    assert!(String::from_utf8_lossy(&kmem.stdout).contains("ok\n"));
    assert!(
        kmem.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&kmem.stderr)
    );
}

/// git with fixed identities and dates, so both runs make the same commits.
fn git(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "kmem")
        .env("GIT_AUTHOR_EMAIL", "kmem@example.invalid")
        .env("GIT_COMMITTER_NAME", "kmem")
        .env("GIT_COMMITTER_EMAIL", "kmem@example.invalid")
        .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .env_remove("GIT_DIR");
    c
}

/// Builds a repository in `dir` (under libkmalloc if `preload`) and returns
/// the concatenated output of the inspecting commands.
fn git_session(dir: &Path, preload: bool) -> String {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let step = |args: &[&str]| {
        let o = run(git(dir, args), preload, "");
        assert!(
            o.status.success(),
            "git {args:?} (preload {preload}) failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    step(&["init", "-q", "-b", "main"]);
    let mut out = String::new();
    for commit in 0..12 {
        for f in 0..25 {
            let body: String = (0..(commit * 40 + f * 13))
                .map(|i| format!("line {i} of file {f} in commit {commit}\n"))
                .collect();
            std::fs::write(dir.join(format!("f{f}.txt")), body).unwrap();
        }
        step(&["add", "-A"]);
        step(&["commit", "-q", "-m", &format!("commit {commit}")]);
        if commit == 6 {
            step(&["branch", "side"]);
        }
    }
    out += &step(&["log", "--stat", "--format=%H %s"]);
    out += &step(&["diff", "side", "main", "--shortstat"]);
    step(&["gc", "-q", "--aggressive"]);
    out += &step(&["count-objects", "-v"])
        .lines()
        .filter(|l| l.starts_with("count") || l.starts_with("in-pack"))
        .collect::<Vec<_>>()
        .join("\n");
    out += &step(&["fsck", "--full"]);
    out += &step(&["rev-list", "--all", "--objects"]);
    out
}

#[test]
fn git_scratch_repository() {
    if !need("git") {
        return;
    }
    let dir = scratch("git");
    let plain = git_session(&dir.join("plain"), false);
    let kmem = git_session(&dir.join("kmem"), true);
    assert_eq!(plain, kmem);
    assert!(plain.contains("commit 11"));
}

/// A shell script that writes through descriptors 3 and 4 (`exec 3>file`)
/// while it forks for every command substitution and runs other programs.
/// The RAM memfd used to sit on 3, where the script's file replaced it: the
/// next fork's child copied the file as its heap and bash broke.
const SH_SCRIPT: &str = r#"
exec 3>"$1/three" 4>"$1/four"
for i in $(seq 300); do
    echo "line $i" >&3
    x=$(echo "sub $i")
    echo "$x $(printf '%05d' "$i")" >&4
done
exec 3>&- 4>&-
words=()
for i in $(seq 3000); do words+=("word$((i * 7919 % 1000))"); done
printf '%s\n' "${words[@]}" | sort | uniq -c | sort -rn | head -3
wc -l < "$1/three"
cksum < "$1/three"
cksum < "$1/four"
"#;

#[test]
fn bash_script_with_its_own_descriptors() {
    if !need("bash") {
        return;
    }
    let dir = scratch("bash");
    let script = dir.join("script.sh");
    std::fs::write(&script, SH_SCRIPT).unwrap();
    let out = same_output("bash script.sh", || {
        let mut c = Command::new("bash");
        c.arg(&script).arg(&dir);
        c
    });
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\n300\n"), "{text}");
}

#[test]
fn cxx_new_delete_threads() {
    let dir = scratch("cxx");
    let Some(exe) = compile("cxx.cc", &dir, &[]) else {
        return;
    };
    let out = same_output("cxx.cc", || Command::new(&exe));
    assert!(String::from_utf8_lossy(&out.stdout).contains("thread 7 done\n"));
}

/// libstdc++'s `operator new` calls `malloc`, so libkmalloc needs no
/// export of its own for it: an overflow of a `new char[32]` is found by
/// `slub_debug` in kmalloc-32.
#[test]
fn cxx_operator_new_reaches_kmalloc() {
    let Some((_, err)) = run_program("cxx-new", "new_overflow.cc", &[], "slub_debug=FZP") else {
        return;
    };
    assert!(
        err.contains("BUG kmalloc-32 ") && err.contains("Redzone overwritten"),
        "{err}"
    );
}
