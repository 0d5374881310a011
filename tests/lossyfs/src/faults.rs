//! Operations that fail on command: `fsync` returning EIO on the WAL's files, `write` returning ENOSPC,
//! `read` returning EIO on one segment.

/// The operations a fault can hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Read,
    /// `write` and growing a file with `truncate`.
    Write,
    /// `fsync`/`fdatasync` of a file.
    Fsync,
    /// `fsync` of a directory.
    Fsyncdir,
    Create,
    Mkdir,
    Rename,
    Unlink,
}

/// One rule: operations `op` on paths containing `path_contains` fail with `errno`, `times` times (or
/// until cleared).
#[derive(Clone, Debug)]
pub struct Fault {
    pub op: Op,
    pub path_contains: String,
    pub errno: i32,
    /// How many more operations fail; `None`: every one until the rule is cleared.
    pub times: Option<u32>,
    /// How many matching operations succeed before the rule starts failing them.
    pub skip: u32,
}

impl Fault {
    /// `op` on any path containing `path_contains` fails with `errno` until cleared.
    pub fn always(op: Op, path_contains: &str, errno: i32) -> Fault {
        Fault { op, path_contains: path_contains.into(), errno, times: None, skip: 0 }
    }

    /// The next `times` such operations fail with `errno`.
    pub fn times(op: Op, path_contains: &str, errno: i32, times: u32) -> Fault {
        Fault { op, path_contains: path_contains.into(), errno, times: Some(times), skip: 0 }
    }

    /// Lets the first `n` matching operations through (a write that fails half-way: its first requests
    /// succeed).
    pub fn after(mut self, n: u32) -> Fault {
        self.skip = n;
        self
    }

    /// Whether this rule fails `op` on `path` now (and counts it).
    pub(crate) fn matches(&mut self, op: Op, path: &str) -> bool {
        if op != self.op || !path.contains(&self.path_contains) {
            return false;
        }
        if self.skip > 0 {
            self.skip -= 1;
            return false;
        }
        match &mut self.times {
            None => true,
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
        }
    }
}
