//! Apache `htpasswd` entries, as the Collector's `basicauth` reads them: bcrypt (`$2y$`, `$2a$`, `$2b$`:
//! `htpasswd -B`), MD5-crypt (`$apr1$`: htpasswd's default) and SHA-1 (`{SHA}`: `htpasswd -s`). An entry
//! in another form is refused when the file is loaded, with its line.

use base64::Engine;
use std::collections::HashMap;

#[derive(Debug)]
enum Hash {
    Bcrypt(String),
    Apr1 { salt: String, full: String },
    Sha1(Vec<u8>),
}

/// `user → hash`, from the lines of one or more htpasswd texts.
#[derive(Debug, Default)]
pub struct Htpasswd(HashMap<String, Hash>);

impl Htpasswd {
    /// Adds the entries of `text` (`what` names it in errors: the file, or `inline`).
    pub fn add(&mut self, text: &str, what: &str) -> Result<(), String> {
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = format!("{what} line {}", n + 1);
            let (user, hash) = line.split_once(':').ok_or_else(|| format!("{at}: expected user:hash"))?;
            let hash = if hash.starts_with("$2y$") || hash.starts_with("$2a$") || hash.starts_with("$2b$") {
                Hash::Bcrypt(hash.to_string())
            } else if let Some(rest) = hash.strip_prefix("$apr1$") {
                let salt = rest.split('$').next().unwrap_or("").to_string();
                Hash::Apr1 { salt, full: hash.to_string() }
            } else if let Some(b64) = hash.strip_prefix("{SHA}") {
                Hash::Sha1(
                    base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .map_err(|_| format!("{at}: the {{SHA}} hash of {user} is not base64"))?,
                )
            } else {
                return Err(format!(
                    "{at}: the password of {user} is not hashed with bcrypt ($2y$), MD5 ($apr1$) or SHA-1 ({{SHA}}); \
                     make it with `htpasswd -B`"
                ));
            };
            self.0.insert(user.to_string(), hash);
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `password` is `user`'s.
    pub fn check(&self, user: &str, password: &str) -> bool {
        match self.0.get(user) {
            None => {
                // Spend about as long as a real check, so that timing does not tell which users exist.
                let _ = apr1(password, "openwit0");
                false
            }
            Some(Hash::Bcrypt(h)) => bcrypt::verify(password, h).unwrap_or(false),
            Some(Hash::Apr1 { salt, full }) => {
                openwit_core::auth::same_secret(apr1(password, salt).as_bytes(), full.as_bytes())
            }
            Some(Hash::Sha1(h)) => {
                use sha1::Digest;
                openwit_core::auth::same_secret(&sha1::Sha1::digest(password.as_bytes()), h)
            }
        }
    }
}

/// Apache's MD5-crypt (`$apr1$salt$hash`): MD5-crypt with the magic `$apr1$`.
pub fn apr1(password: &str, salt: &str) -> String {
    use md5::{Digest, Md5};
    const MAGIC: &[u8] = b"$apr1$";
    let pw = password.as_bytes();
    let salt = &salt.as_bytes()[..salt.len().min(8)];
    let alt = Md5::new().chain_update(pw).chain_update(salt).chain_update(pw).finalize();
    let mut ctx = Md5::new().chain_update(pw).chain_update(MAGIC).chain_update(salt);
    let mut left = pw.len();
    while left > 0 {
        ctx.update(&alt[..left.min(16)]);
        left = left.saturating_sub(16);
    }
    let mut i = pw.len();
    while i > 0 {
        ctx.update(if i & 1 == 1 { &[0u8][..] } else { &pw[..1] });
        i >>= 1;
    }
    let mut fin = ctx.finalize();
    for round in 0..1000 {
        let mut c = Md5::new();
        if round & 1 == 1 {
            c.update(pw);
        } else {
            c.update(fin);
        }
        if round % 3 != 0 {
            c.update(salt);
        }
        if round % 7 != 0 {
            c.update(pw);
        }
        if round & 1 == 1 {
            c.update(fin);
        } else {
            c.update(pw);
        }
        fin = c.finalize();
    }
    const ITOA64: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::from("$apr1$");
    out.push_str(std::str::from_utf8(salt).unwrap_or(""));
    out.push('$');
    let mut put = |v: u32, n: usize| {
        let mut v = v;
        for _ in 0..n {
            out.push(ITOA64[(v & 0x3f) as usize] as char);
            v >>= 6;
        }
    };
    let b = |i: usize| u32::from(fin[i]);
    for (x, y, z) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        put((b(x) << 16) | (b(y) << 8) | b(z), 4);
    }
    put(b(11), 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_hash_form_checks_its_password() {
        // Known vectors: Apache's MD5 of "password" with two salts, and SHA-1 of "password".
        assert_eq!(apr1("password", "RandSalt"), "$apr1$RandSalt$PgCXHRrkpSt4cbyC2C6bm/");
        let bcrypt = bcrypt::hash("s3cret", 4).unwrap();
        let mut h = Htpasswd::default();
        h.add(
            &format!(
                "# comment\nann:$apr1$lZL6V/ci$eIMz/iKDkbtys/uU7LEK00\nbob:{{SHA}}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\ncid:{bcrypt}\n"
            ),
            "inline",
        )
        .unwrap();
        assert!(h.check("ann", "password") && !h.check("ann", "Password"));
        assert!(h.check("bob", "password") && !h.check("bob", "passwor"));
        assert!(h.check("cid", "s3cret") && !h.check("cid", "s3cre"));
        assert!(!h.check("dan", "password"));
    }

    #[test]
    fn an_entry_in_an_unknown_form_is_refused_with_its_line() {
        let e = Htpasswd::default().add("ann:$apr1$x$y\nbob:plaintext\n", "/etc/openwit/htpasswd").unwrap_err();
        assert!(e.contains("/etc/openwit/htpasswd line 2") && e.contains("bob") && e.contains("htpasswd -B"), "{e}");
        assert!(Htpasswd::default().add("nocolon", "inline").unwrap_err().contains("user:hash"));
    }
}
