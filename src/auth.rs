//! Credentials: grants, bearer tokens (HS256 JWTs), the users file with argon2 password hashes, and Basic headers.
//!
//! Nothing here knows about flights or requests; [`crate::service`] extracts a [`Principal`] from request metadata
//! and checks its [`Grants`] against the namespaces a request touches.
//!
//! # Token claims
//!
//! ```text
//! {"sub": "alice", "grants": {"sales": "read", "scratch": "write"}, "iat": 1767225600, "exp": 1767268800}
//! {"sub": "admin", "grants": {"*": "admin"}, ...}
//! ```
//!
//! A grant names a namespace (or `*`, every namespace) and a level: `read` < `write` < `admin`, each including
//! the ones before it.
//!
//! # Users file (JSON)
//!
//! ```text
//! {"users": {"alice": {"password_hash": "$argon2id$v=19$...", "grants": {"sales": "read"}}}}
//! ```
//!
//! `flightbay hash-password` prints a hash for a password read from stdin.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
pub use crate::throttle::LoginThrottle;

/// The grant key that stands for every namespace.
pub const WILDCARD: &str = "*";

/// Seconds a token may be past its expiry and still be accepted (clock skew between machines).
const LEEWAY_SECONDS: u64 = 5;

/// What a grant allows in a namespace; each level includes the ones below it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Describe and fetch flights, run queries over them.
    Read,
    /// Also upload, name, rename and drop.
    Write,
    /// Also delete the namespace; with `*`, server-wide actions (stats, shutdown).
    Admin,
}

impl Level {
    /// The level's name as written in grants.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Read => "read",
            Level::Write => "write",
            Level::Admin => "admin",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "read" => Ok(Level::Read),
            "write" => Ok(Level::Write),
            "admin" => Ok(Level::Admin),
            other => Err(Error::invalid(format!(
                "unknown grant level {other:?}: use read, write or admin"
            ))),
        }
    }
}

/// Namespace (or [`WILDCARD`]) → level.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Grants(pub BTreeMap<String, Level>);

impl Grants {
    /// `{"*": "admin"}`: everything.
    pub fn admin() -> Self {
        Self(BTreeMap::from([(WILDCARD.to_string(), Level::Admin)]))
    }

    /// Parses `--grant` values such as `sales:read` or `*:admin`; a namespace given twice keeps its highest level.
    pub fn parse<S: AsRef<str>>(specs: &[S]) -> Result<Self> {
        let mut grants = BTreeMap::new();
        for spec in specs {
            let spec = spec.as_ref();
            let (namespace, level) = spec
                .rsplit_once(':')
                .ok_or_else(|| Error::invalid(format!("grant {spec:?} must look like namespace:read")))?;
            let level: Level = level.parse()?;
            if namespace != WILDCARD {
                crate::store::validate_identifier("namespace", namespace)?;
            }
            let entry = grants.entry(namespace.to_string()).or_insert(level);
            *entry = (*entry).max(level);
        }
        Ok(Self(grants))
    }

    /// The level granted in `namespace`, counting the wildcard.
    pub fn level(&self, namespace: &str) -> Option<Level> {
        let direct = self.0.get(namespace).copied();
        let wildcard = self.0.get(WILDCARD).copied();
        direct.max(wildcard)
    }

    /// Whether `namespace` is granted at least `level`.
    pub fn allows(&self, namespace: &str, level: Level) -> bool {
        self.level(namespace).is_some_and(|l| l >= level)
    }

    /// Whether the wildcard grant is at least `level` (what server-wide actions and orphaned flights need).
    pub fn allows_everywhere(&self, level: Level) -> bool {
        self.0.get(WILDCARD).is_some_and(|l| *l >= level)
    }
}

impl fmt::Display for Grants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no grants");
        }
        let parts: Vec<String> = self.0.iter().map(|(ns, l)| format!("{ns}:{l}")).collect();
        f.write_str(&parts.join(", "))
    }
}

/// Who is calling and what they may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The user name (token subject).
    pub subject: String,
    /// What the caller may do.
    pub grants: Grants,
}

impl Principal {
    /// The caller when auth is off: may do everything.
    pub fn unrestricted() -> Self {
        Self {
            subject: "anonymous".to_string(),
            grants: Grants::admin(),
        }
    }
}

/// A secret given on the command line; `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl FromStr for Secret {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(Self(s.to_string()))
    }
}

/// Everything the server needs to authenticate callers: the token authority and, if configured, the users.
#[derive(Debug)]
pub struct Authenticator {
    /// Mints and verifies bearer tokens.
    pub tokens: TokenAuthority,
    /// Users for Basic credentials; `None` means only bearer tokens are accepted.
    pub users: Option<Arc<Users>>,
    /// Bounds password checks and refuses repeated failures (see [`crate::throttle`]).
    pub throttle: LoginThrottle,
}

impl Authenticator {
    /// The principal behind `user:password` sent from `peer`; UNAUTHENTICATED when wrong or when there is no
    /// users file, RESOURCE_EXHAUSTED or UNAVAILABLE when throttled (see [`crate::throttle`]).
    /// Argon2 is slow on purpose, so the check runs on the throttle's own threads, off the async workers.
    pub async fn login(&self, user: String, password: String, peer: Option<IpAddr>) -> Result<Principal> {
        let users = Arc::clone(self.users.as_ref().ok_or_else(|| {
            Error::unauthenticated(
                "flightbay: this server has no users file; authenticate with a bearer token (`flightbay token`)",
            )
        })?);
        let permit = self.throttle.admit(&user, peer).await?;
        let name = user.clone();
        let checked = self
            .throttle
            .run(&permit, move || users.check(&name, &password))
            .await?;
        drop(permit);
        match checked {
            Ok(grants) => {
                self.throttle.record_success(&user);
                Ok(Principal { subject: user, grants })
            }
            Err(e) => {
                self.throttle.record_failure(&user, peer);
                Err(e)
            }
        }
    }

    /// The principal behind a bearer token.
    pub fn verify(&self, token: &str) -> Result<Principal> {
        let claims = self.tokens.verify(token)?;
        Ok(Principal {
            subject: claims.sub,
            grants: claims.grants,
        })
    }
}

/// The claims of a flightbay bearer token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Subject: the user name.
    pub sub: String,
    /// Grants.
    #[serde(default)]
    pub grants: Grants,
    /// Issued at (seconds since the epoch).
    #[serde(default)]
    pub iat: u64,
    /// Expiry (seconds since the epoch).
    pub exp: u64,
}

/// Mints and verifies HS256 bearer tokens with one shared secret.
pub struct TokenAuthority {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl fmt::Debug for TokenAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenAuthority")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl TokenAuthority {
    /// An authority signing with `secret`; minted tokens live `ttl`.
    pub fn try_new(secret: &str, ttl: Duration) -> Result<Self> {
        if secret.len() < 16 {
            return Err(Error::invalid(
                "the JWT secret must be at least 16 bytes; generate one with e.g. `openssl rand -hex 32`",
            ));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECONDS;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            ttl,
        })
    }

    /// How long minted tokens live.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A token for `subject` with `grants`, expiring after the authority's ttl.
    pub fn mint(&self, subject: &str, grants: &Grants) -> Result<String> {
        let now = jsonwebtoken::get_current_timestamp();
        self.mint_claims(&Claims {
            sub: subject.to_string(),
            grants: grants.clone(),
            iat: now,
            exp: now.saturating_add(self.ttl.as_secs()),
        })
    }

    /// A token carrying exactly `claims` (tests use it for expired tokens).
    pub fn mint_claims(&self, claims: &Claims) -> Result<String> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| Error::internal(format!("cannot sign token: {e}")))
    }

    /// The claims of a valid token; UNAUTHENTICATED for a malformed, forged or expired one.
    pub fn verify(&self, token: &str) -> Result<Claims> {
        use jsonwebtoken::errors::ErrorKind;
        jsonwebtoken::decode::<Claims>(token.trim(), &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| {
                let why = match e.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired; get a new one through Handshake",
                    ErrorKind::InvalidSignature => "the token's signature does not match this server's secret",
                    _ => "the bearer token is malformed",
                };
                Error::unauthenticated(format!("flightbay: {why}"))
            })
    }
}

/// One entry of the users file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// An argon2 PHC string (`$argon2id$…`), as printed by `flightbay hash-password`.
    pub password_hash: String,
    /// What the user may do.
    #[serde(default)]
    pub grants: Grants,
}

/// The users file: user name → [`User`].
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Users {
    /// Users by name.
    pub users: BTreeMap<String, User>,
}

impl Users {
    /// Reads and checks a JSON users file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::invalid(format!("cannot read users file {}: {e}", path.display())))?;
        let users: Users = serde_json::from_str(&text)
            .map_err(|e| Error::invalid(format!("invalid users file {}: {e}", path.display())))?;
        for (name, user) in &users.users {
            PasswordHash::new(&user.password_hash).map_err(|e| {
                Error::invalid(format!(
                    "user {name:?} in {}: password_hash is not an argon2 hash ({e}); make one with `flightbay hash-password`",
                    path.display()
                ))
            })?;
        }
        dummy_hash();
        Ok(users)
    }

    /// The grants of `user` if `password` is right; UNAUTHENTICATED otherwise (without saying which part was wrong).
    pub fn check(&self, user: &str, password: &str) -> Result<Grants> {
        let denied = || Error::unauthenticated("flightbay: unknown user or wrong password");
        let Some(entry) = self.users.get(user) else {
            // Spend the same time as for a known user, so response times do not tell which user names exist.
            if let Some(dummy) = dummy_hash()
                && let Ok(hash) = PasswordHash::new(dummy)
            {
                // The result is ignored on purpose: the user does not exist either way.
                let _ = verify(password, &hash);
            }
            return Err(denied());
        };
        let hash = PasswordHash::new(&entry.password_hash).map_err(|_| denied())?;
        if !verify(password, &hash) {
            return Err(denied());
        }
        Ok(entry.grants.clone())
    }
}

/// Whether `password` matches `hash`, computed in argon2 memory that each thread keeps and reuses.
///
/// `verify_password` allocates its 19 MiB anew every time; after the first free, glibc serves blocks of that size
/// from its arenas instead of fresh mappings and keeps them, so RSS grew by about 5 MB per login (48 logins: +250
/// MB) even with two checks at a time. Password checks run on the login throttle's two threads, so this holds
/// at most two such blocks for the life of the process.
fn verify(password: &str, hash: &PasswordHash<'_>) -> bool {
    use argon2::{Algorithm, Block, Params, Version};
    thread_local! {
        static BLOCKS: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let Some(expected) = &hash.hash else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (Algorithm::try_from(hash.algorithm), Params::try_from(hash)) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from) {
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
        None => Version::default(),
    };
    let mut salt = [0u8; 64];
    let Some(Ok(salt)) = hash.salt.map(|s| s.decode_b64(&mut salt)) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    let blocks = params.block_count();
    let hasher = Argon2::new(algorithm, version, params);
    let hashed = BLOCKS.with(|memory| {
        let mut memory = memory.borrow_mut();
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        hasher.hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..blocks])
    });
    // `Output`'s equality is constant-time.
    hashed.is_ok() && argon2::password_hash::Output::new(&out).is_ok_and(|o| o == *expected)
}

/// The hash unknown users are checked against: made with the same parameters as [`hash_password`], once per
/// process ([`Users::load`] makes it, so the first unknown user does not pay for it and stand out by time).
fn dummy_hash() -> Option<&'static str> {
    static DUMMY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("flightbay-dummy").ok()).as_deref()
}

/// An argon2id hash of `password` in PHC form, with a random salt.
pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::internal(format!("cannot hash password: {e}")))
}

/// `flightbay token`: a token for `args.user` with `args.grants`, signed with `args.secret`.
pub fn mint_from_args(args: &crate::config::TokenArgs) -> Result<String> {
    let grants = Grants::parse(&args.grants)?;
    TokenAuthority::try_new(args.secret.expose(), args.ttl)?.mint(&args.user, &grants)
}

/// `flightbay hash-password`: hashes the first line of `input` (without its line ending).
pub fn hash_from_reader(mut input: impl std::io::BufRead) -> Result<String> {
    let mut line = String::new();
    input.read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err(Error::invalid("no password on stdin"));
    }
    hash_password(password)
}

/// Decodes the base64 `user:password` of a Basic credential, padded or not (Go clients send it unpadded).
pub fn decode_basic(b64: &str) -> Result<(String, String)> {
    let b64 = b64.trim().trim_end_matches('=');
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(b64)
        .map_err(|_| Error::unauthenticated("flightbay: Basic credentials are not valid base64"))?;
    let text =
        String::from_utf8(bytes).map_err(|_| Error::unauthenticated("flightbay: Basic credentials are not UTF-8"))?;
    let (user, password) = text
        .split_once(':')
        .ok_or_else(|| Error::unauthenticated("flightbay: Basic credentials must be user:password"))?;
    Ok((user.to_string(), password.to_string()))
}

/// Parses a duration such as `30s`, `15m`, `12h`, `7d` or a number of seconds.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: u64 = num
        .parse()
        .map_err(|_| format!("bad duration {s:?}: expected e.g. 30s, 15m, 12h or 7d"))?;
    let mult = match unit.trim() {
        "" | "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => return Err(format!("unknown duration unit {other:?} in {s:?}")),
    };
    if num == 0 {
        return Err(format!("duration {s:?} must be positive"));
    }
    Ok(Duration::from_secs(num.saturating_mul(mult)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_and_levels() {
        let g = Grants::parse(&["sales:read", "scratch:write", "sales:write"]).unwrap();
        assert!(g.allows("sales", Level::Write));
        assert!(!g.allows("sales", Level::Admin));
        assert!(!g.allows("default", Level::Read));
        assert!(!g.allows_everywhere(Level::Read));
        let a = Grants::admin();
        assert!(a.allows("anything", Level::Admin) && a.allows_everywhere(Level::Admin));
        assert_eq!(g.to_string(), "sales:write, scratch:write");
        for bad in ["sales", "sales:owner", "bad name:read", "f12:read"] {
            assert!(Grants::parse(&[bad]).is_err(), "{bad}");
        }
        assert_eq!(Grants::parse(&["*:read"]).unwrap().level("x"), Some(Level::Read));
    }

    #[test]
    fn tokens_round_trip_and_fail_closed() {
        let authority = TokenAuthority::try_new("0123456789abcdef0123", Duration::from_secs(60)).unwrap();
        let grants = Grants::parse(&["sales:read"]).unwrap();
        let token = authority.mint("alice", &grants).unwrap();
        let claims = authority.verify(&token).unwrap();
        assert_eq!((claims.sub.as_str(), &claims.grants), ("alice", &grants));

        let other = TokenAuthority::try_new("another-secret-of-enough-length", Duration::from_secs(60)).unwrap();
        assert!(matches!(other.verify(&token), Err(Error::Unauthenticated(_))));
        assert!(matches!(authority.verify("not.a.jwt"), Err(Error::Unauthenticated(_))));
        let expired = authority
            .mint_claims(&Claims {
                sub: "alice".into(),
                grants,
                iat: 1,
                exp: 2,
            })
            .unwrap();
        let err = authority.verify(&expired).unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
        assert!(TokenAuthority::try_new("short", Duration::from_secs(1)).is_err());
    }

    #[test]
    fn passwords_and_basic() {
        let hash = hash_password("s3cret").unwrap();
        let users = Users {
            users: BTreeMap::from([(
                "bob".to_string(),
                User {
                    password_hash: hash,
                    grants: Grants::parse(&["default:write"]).unwrap(),
                },
            )]),
        };
        assert!(users.check("bob", "s3cret").unwrap().allows("default", Level::Write));
        assert!(users.check("bob", "wrong").is_err());
        assert!(users.check("eve", "s3cret").is_err());
        // "ab:c" padded (pyarrow) and unpadded (Go's RawStdEncoding).
        assert_eq!(decode_basic("YWI6Yw==").unwrap(), ("ab".into(), "c".into()));
        assert_eq!(decode_basic("YWI6Yw").unwrap(), ("ab".into(), "c".into()));
        assert!(decode_basic("!!!").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("12h").unwrap(), Duration::from_secs(43_200));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        for bad in ["", "h", "0s", "5w", "-1"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
