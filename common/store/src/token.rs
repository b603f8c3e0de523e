//! 100ms-compatible tokens: HS256 JWTs signed with the workspace secret.
//!
//! - The **auth token** lets a client join one room in one role: claims `access_key`,
//!   `room_id`, `user_id`, `role`, `type: "app"`, `version: 2`, `iat`, `nbf`, `exp`, `jti`.
//!   Signaling verifies it with [`verify_auth_token`].
//! - The **management token** authorizes REST calls: `access_key`, `type: "management"`,
//!   `version: 2`, `iat`, `nbf`, `exp`, `jti`.
//!
//! **The payload segment never holds `-` or `_`.** The 100ms web SDK decodes the payload with
//! the browser's `atob`, which rejects those base64url characters, and join fails. With ASCII
//! JSON they appear only where the third byte of a 3-byte group is `>`, `?`, `~` or DEL, or a
//! byte is non-ASCII. So the payload JSON is written with those characters escaped as `\uXXXX`
//! (still the same JSON to every parser), which makes the segment clean by construction; the
//! minter still checks the segment and re-mints with a fresh `jti` should it ever not be.
//!
//! **Clock leeway.** Verification accepts a token up to [`LEEWAY`] (10 s) after its `exp` and
//! before its `nbf`, so a minter whose clock runs a little ahead (another host, or the same one
//! across an NTP step) does not produce tokens refused on arrival.
//!
//! ```
//! # let dir = std::env::temp_dir().join(format!("token-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! use std::time::{Duration, SystemTime};
//! use store::token::{mint_auth_token, verify_auth_token, TokenError};
//! let store = store::Store::open(&dir.join("db")).unwrap();
//! let ws = store.ensure_default_workspace().unwrap();
//! let now = SystemTime::now();
//! let t = mint_auth_token(&ws, "room1", "bob", "guest", Duration::from_secs(60), now);
//! assert_eq!(verify_auth_token(&store, &t, now).unwrap().0.role, "guest");
//! let later = now + Duration::from_secs(3600);
//! assert!(matches!(verify_auth_token(&store, &t, later), Err(TokenError::Expired)));
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::{Store, StoreError, Workspace};

/// How far past `exp`, or before `nbf`, a token is still accepted.
pub const LEEWAY: Duration = Duration::from_secs(10);

/// `type` of an auth token (the name 100ms uses).
pub const AUTH_TYPE: &str = "app";
/// `type` of a management token.
pub const MANAGEMENT_TYPE: &str = "management";
/// `version` of the tokens we mint (100ms's current one).
pub const TOKEN_VERSION: u32 = 2;

/// How many times minting retries with a fresh `jti` before giving up on a clean payload; with
/// the escaping writer the first attempt is always clean, so this is a guard, not a loop that runs.
const MAX_MINT_ATTEMPTS: usize = 16;

/// The claims of a verified auth token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuthClaims {
    pub access_key: String,
    pub room_id: String,
    pub user_id: String,
    pub role: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub version: u32,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub jti: String,
}

/// The claims of a management token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct ManagementClaims {
    access_key: String,
    #[serde(rename = "type")]
    kind: String,
    version: u32,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: String,
}

/// Every claim either token may carry, all optional: what a token says before we judge it.
#[derive(Debug, Deserialize)]
struct AnyClaims {
    access_key: Option<String>,
    room_id: Option<String>,
    user_id: Option<String>,
    role: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    version: Option<u32>,
    iat: Option<u64>,
    nbf: Option<u64>,
    exp: Option<u64>,
    jti: Option<String>,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("token signed for an unknown access key")]
    UnknownAccessKey,
    #[error("token signature does not match the workspace secret")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet (nbf in the future)")]
    NotYetValid,
    #[error("management token valid for {secs} s; at most {max} s is accepted (mint a shorter one)")]
    LifetimeTooLong { secs: u64, max: u64 },
    #[error("wrong token type {found:?} (expected type {expected:?})")]
    WrongType { found: String, expected: &'static str },
    #[error("token check failed: {0}")]
    Store(#[from] StoreError),
}

/// Mints an auth token for `user_id` to join `room_id` as `role`, valid from `now` for `ttl`.
pub fn mint_auth_token(
    ws: &Workspace,
    room_id: &str,
    user_id: &str,
    role: &str,
    ttl: Duration,
    now: SystemTime,
) -> String {
    let iat = unix_secs(now);
    mint(ws, |jti| AuthClaims {
        access_key: ws.access_key.clone(),
        room_id: room_id.to_owned(),
        user_id: user_id.to_owned(),
        role: role.to_owned(),
        kind: AUTH_TYPE.to_owned(),
        version: TOKEN_VERSION,
        iat,
        nbf: iat,
        exp: iat.saturating_add(ttl.as_secs()),
        jti,
    })
}

/// Mints a management token (for the REST API), valid from `now` for `ttl`.
pub fn mint_management_token(ws: &Workspace, ttl: Duration, now: SystemTime) -> String {
    let iat = unix_secs(now);
    mint(ws, |jti| ManagementClaims {
        access_key: ws.access_key.clone(),
        kind: MANAGEMENT_TYPE.to_owned(),
        version: TOKEN_VERSION,
        iat,
        nbf: iat,
        exp: iat.saturating_add(ttl.as_secs()),
        jti,
    })
}

fn mint<C: Serialize>(ws: &Workspace, claims: impl Fn(String) -> C) -> String {
    let key = EncodingKey::from_secret(ws.secret.as_bytes());
    let header = Header::new(Algorithm::HS256);
    let mut token = String::new();
    for _ in 0..MAX_MINT_ATTEMPTS {
        let payload = atob_safe_json(&claims(new_jti()));
        // Serializing our claim structs (strings and integers) cannot fail, and HS256 signing
        // with an HMAC key of any length cannot fail either.
        #[allow(clippy::expect_used)]
        let raw = serde_json::value::RawValue::from_string(payload).expect("claims serialize to valid JSON");
        #[allow(clippy::expect_used)]
        {
            token = jsonwebtoken::encode(&header, &raw, &key).expect("HS256 signing cannot fail");
        }
        if payload_is_atob_safe(&token) {
            return token;
        }
    }
    // Unreachable with the escaping writer; return the last token rather than panic.
    token
}

/// A TURN server's time-limited credential in the "REST API for TURN" scheme
/// (draft-uberti-behave-turn-rest; coturn's `use-auth-secret`): the username is
/// `<expiry in Unix seconds>:<user>`, the password base64(HMAC-SHA1(secret, username)). The
/// TURN server checks both with the shared secret alone, so nothing is stored per client, and a
/// credential stops working at its expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnCredential {
    pub username: String,
    pub credential: String,
}

pub fn turn_credential(secret: &str, user: &str, ttl: Duration, now: SystemTime) -> TurnCredential {
    let username = format!("{}:{user}", unix_secs(now).saturating_add(ttl.as_secs()));
    TurnCredential { credential: turn_password(secret, &username), username }
}

/// The password of a TURN `username` under `secret`: base64(HMAC-SHA1(secret, username)), what
/// the TURN server computes to check it.
pub fn turn_password(secret: &str, username: &str) -> String {
    use base64::Engine as _;
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(aws_lc_rs::hmac::sign(&key, username.as_bytes()).as_ref())
}

/// Whether the payload (second) segment of `token` is free of `-` and `_`, which `atob` rejects.
pub fn payload_is_atob_safe(token: &str) -> bool {
    token.split('.').nth(1).is_some_and(|p| !p.contains(['-', '_']))
}

/// Verifies an auth token at time `now`: the workspace from its `access_key`, the HS256
/// signature with that key's secret, `type == "app"`, then `exp` and `nbf` (with [`LEEWAY`]).
/// Returns its claims and the workspace.
pub fn verify_auth_token(store: &Store, token: &str, now: SystemTime) -> Result<(AuthClaims, Workspace), TokenError> {
    let (c, ws, times) = verify(store, token, now, AUTH_TYPE)?;
    let room_id = c.room_id.filter(|s| !s.is_empty()).ok_or_else(|| missing("room_id"))?;
    let role = c.role.filter(|s| !s.is_empty()).ok_or_else(|| missing("role"))?;
    let claims = AuthClaims {
        access_key: ws.access_key.clone(),
        room_id,
        // Optional in 100ms's own server SDK.
        user_id: c.user_id.unwrap_or_default(),
        role,
        kind: AUTH_TYPE.to_owned(),
        version: c.version.unwrap_or(TOKEN_VERSION),
        iat: times.0,
        nbf: times.1,
        exp: times.2,
        jti: c.jti.unwrap_or_default(),
    };
    Ok((claims, ws))
}

/// Verifies a management token (the REST API's bearer) at `now`, as [`verify_auth_token`] does
/// but for `type == "management"`. Returns the workspace it acts on.
pub fn verify_management_token(store: &Store, token: &str, now: SystemTime) -> Result<Workspace, TokenError> {
    let (_, ws, (iat, nbf, exp)) = verify(store, token, now, MANAGEMENT_TYPE)?;
    // A leaked long-lived management token is the workspace's for that long: cap it.
    let secs = exp.saturating_sub(iat.min(nbf));
    if secs > MAX_MANAGEMENT_TTL.as_secs() {
        return Err(TokenError::LifetimeTooLong { secs, max: MAX_MANAGEMENT_TTL.as_secs() });
    }
    Ok(ws)
}

/// The longest a management token may be valid (from `iat` to `exp`): 24 hours, what 100ms's
/// server SDKs mint by default.
pub const MAX_MANAGEMENT_TTL: Duration = Duration::from_secs(24 * 3600);

/// What [`verify`] found: the claims, the workspace, and (iat, nbf, exp).
type Verified = (AnyClaims, Workspace, (u64, u64, u64));

/// The checks both token types share. Returns the claims, the workspace, and (iat, nbf, exp).
fn verify(store: &Store, token: &str, now: SystemTime, expected_type: &'static str) -> Result<Verified, TokenError> {
    if token.split('.').count() != 3 {
        return Err(TokenError::Malformed("a JWT has three dot-separated parts".into()));
    }
    let unverified: AnyClaims = jsonwebtoken::dangerous::insecure_decode_claims(token)
        .map_err(|e| TokenError::Malformed(format!("payload: {e}")))?;
    let access_key = unverified.access_key.ok_or_else(|| missing("access_key"))?;
    let ws = store.workspace_by_access_key(&access_key)?.ok_or(TokenError::UnknownAccessKey)?;

    let mut validation = Validation::new(Algorithm::HS256);
    // We check times ourselves against `now` (time is an argument), and there is no audience.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<AnyClaims>(token, &DecodingKey::from_secret(ws.secret.as_bytes()), &validation)
        .map_err(|e| match e.kind() {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::InvalidAlgorithm => TokenError::Malformed("algorithm must be HS256".into()),
        _ => TokenError::Malformed(e.to_string()),
    })?;
    let c = data.claims;

    let kind = c.kind.clone().ok_or_else(|| missing("type"))?;
    if kind != expected_type {
        return Err(TokenError::WrongType { found: kind, expected: expected_type });
    }
    let now_s = unix_secs(now);
    let leeway = LEEWAY.as_secs();
    let exp = c.exp.ok_or_else(|| missing("exp"))?;
    if exp.saturating_add(leeway) < now_s {
        return Err(TokenError::Expired);
    }
    let nbf = c.nbf.or(c.iat).unwrap_or(0);
    if nbf > now_s.saturating_add(leeway) {
        return Err(TokenError::NotYetValid);
    }
    let iat = c.iat.unwrap_or(nbf);
    Ok((c, ws, (iat, nbf, exp)))
}

fn missing(claim: &str) -> TokenError {
    TokenError::Malformed(format!("missing claim {claim}"))
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A UUID v4 (the `jti` 100ms's SDKs put in tokens).
fn new_jti() -> String {
    crate::new_uuid()
}

/// Serializes `value` as compact JSON with `>`, `?`, `~`, DEL and every non-ASCII character
/// written as `\uXXXX` escapes, so its base64url encoding has no `-` or `_`.
fn atob_safe_json<T: Serialize>(value: &T) -> String {
    let mut out = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, AtobSafe);
    // Our claim structs hold only strings and integers: serialization cannot fail.
    #[allow(clippy::expect_used)]
    value.serialize(&mut ser).expect("claims serialize");
    // The formatter writes only ASCII (everything else is escaped), so this is UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// The escaping serde_json formatter for [`atob_safe_json`].
struct AtobSafe;

impl serde_json::ser::Formatter for AtobSafe {
    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, w: &mut W, fragment: &str) -> io::Result<()> {
        let mut start = 0;
        for (i, ch) in fragment.char_indices() {
            if ch.is_ascii() && !matches!(ch, '>' | '?' | '~' | '\x7f') {
                continue;
            }
            w.write_all(&fragment.as_bytes()[start..i])?;
            let mut units = [0u16; 2];
            for unit in ch.encode_utf16(&mut units) {
                write!(w, "\\u{unit:04x}")?;
            }
            start = i + ch.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn management_tokens_valid_longer_than_a_day_are_refused() {
        for (b, ws) in setups("mgmt-cap") {
            let now = SystemTime::now();
            let day = mint_management_token(&ws, MAX_MANAGEMENT_TTL, now);
            assert!(verify_management_token(&b.store, &day, now).is_ok());
            let week = mint_management_token(&ws, MAX_MANAGEMENT_TTL * 7, now);
            let refused = verify_management_token(&b.store, &week, now);
            assert!(matches!(refused, Err(TokenError::LifetimeTooLong { .. })), "{}", b.name);
        }
    }

    #[test]
    fn turn_credentials_follow_the_rest_api_for_turn() {
        // The HMAC-SHA1 of "1700003600:alice" under "secret", as `echo -n 1700003600:alice |
        // openssl dgst -sha1 -hmac secret -binary | base64` gives it.
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let c = turn_credential("secret", "alice", Duration::from_secs(3600), now);
        assert_eq!(c.username, "1700003600:alice");
        assert_eq!(c.credential, "LLPLO4qjdVL2qZhwr3eImhn7J20=");
    }
    use super::*;
    use crate::test_support::{Backend, backends};

    /// Each backend with its default workspace.
    fn setups(tag: &str) -> Vec<(Backend, Workspace)> {
        backends(tag)
            .into_iter()
            .map(|b| {
                let ws = b.store.ensure_default_workspace().unwrap();
                (b, ws)
            })
            .collect()
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn minted_payloads_never_hold_base64url_only_characters_and_verify() {
        for (b, ws) in setups("atob") {
            let store = &b.store;
            let now = SystemTime::now();
            let mut ids: Vec<String> = vec![
                "alice".into(),
                ">>>???~~~".into(),
                "a>b?c~d\x7fe".into(),
                "ünïcødé-用户-😀".into(),
                "quote\"back\\slash\nnewline".into(),
                String::new(),
            ];
            // Every ASCII character at every alignment, plus some multi-byte ones.
            for pad in 0..3 {
                for c in (0u8..128).map(char::from).chain("é€😀ÿ".chars()) {
                    ids.push(format!("{}{c}{c}{c}", "x".repeat(pad)));
                }
            }
            for (i, user) in ids.iter().enumerate() {
                let role = ["host", "guest", "audio-only", "r?l~e>"][i % 4];
                let token = mint_auth_token(&ws, "65f0a1b2c3d4e5f6a7b8c9d0", user, role, HOUR, now);
                let payload = token.split('.').nth(1).unwrap();
                assert!(!payload.contains(['-', '_']), "user {user:?}: payload {payload}");
                let (claims, got_ws) = verify_auth_token(store, &token, now).unwrap();
                assert_eq!(claims.user_id, *user);
                assert_eq!(claims.role, role);
                assert_eq!(got_ws.id, ws.id);
            }
        }
    }

    #[test]
    fn the_escaping_is_what_keeps_the_payload_clean() {
        // Plain JSON with `>` as the third byte of a 3-byte group encodes to a `-`.
        let plain = serde_json::to_string(&serde_json::json!({"u": "ab>"})).unwrap();
        assert_eq!(plain, r#"{"u":"ab>"}"#);
        assert!(b64url(plain.as_bytes()).contains('-'));
        let safe = atob_safe_json(&serde_json::json!({"u": "ab>"}));
        assert_eq!(safe, r#"{"u":"ab\u003e"}"#);
        assert!(!b64url(safe.as_bytes()).contains(['-', '_']));
        assert_eq!(serde_json::from_str::<serde_json::Value>(&safe).unwrap()["u"], "ab>");
        assert_eq!(atob_safe_json(&"😀"), r#""\ud83d\ude00""#);
    }

    #[test]
    fn auth_claims_carry_100ms_fields() {
        for (b, ws) in setups("claims") {
            let store = &b.store;
            let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
            let token = mint_auth_token(&ws, "room-x", "u1", "host", HOUR, now);
            let (c, _) = verify_auth_token(store, &token, now).unwrap();
            assert_eq!(c.access_key, ws.access_key);
            assert_eq!((c.kind.as_str(), c.version), ("app", 2));
            assert_eq!((c.iat, c.nbf, c.exp), (1_800_000_000, 1_800_000_000, 1_800_003_600));
            assert_eq!(c.jti.len(), 36);
            assert_eq!(&c.jti[14..15], "4", "jti is a UUID v4");
            let other = mint_auth_token(&ws, "room-x", "u1", "host", HOUR, now);
            assert_ne!(verify_auth_token(store, &other, now).unwrap().0.jti, c.jti);
        }
    }

    #[test]
    fn expired_tokens_are_refused_after_the_leeway() {
        for (b, ws) in setups("exp") {
            let store = &b.store;
            let now = SystemTime::now();
            let token = mint_auth_token(&ws, "r", "u", "guest", Duration::from_secs(60), now);
            assert!(verify_auth_token(store, &token, now + Duration::from_secs(60 + 10)).is_ok(), "within leeway");
            let err = verify_auth_token(store, &token, now + Duration::from_secs(60 + 11)).unwrap_err();
            assert!(matches!(err, TokenError::Expired), "{err}");
        }
    }

    #[test]
    fn tokens_from_the_future_are_refused_beyond_the_leeway() {
        for (b, ws) in setups("nbf") {
            let store = &b.store;
            let now = SystemTime::now();
            let token = mint_auth_token(&ws, "r", "u", "guest", HOUR, now + Duration::from_secs(30));
            let err = verify_auth_token(store, &token, now).unwrap_err();
            assert!(matches!(err, TokenError::NotYetValid), "{err}");
            let slightly = mint_auth_token(&ws, "r", "u", "guest", HOUR, now + Duration::from_secs(5));
            assert!(verify_auth_token(store, &slightly, now).is_ok(), "within leeway");
        }
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        for (b, ws) in setups("sig") {
            let store = &b.store;
            let forged_ws = Workspace { secret: "not-the-secret".into(), ..ws.clone() };
            let token = mint_auth_token(&forged_ws, "r", "u", "host", HOUR, SystemTime::now());
            let err = verify_auth_token(store, &token, SystemTime::now()).unwrap_err();
            assert!(matches!(err, TokenError::BadSignature), "{err}");
            // A payload edited after signing (role upgraded) is refused the same way.
            let good = mint_auth_token(&ws, "r", "u", "guest", HOUR, SystemTime::now());
            let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
            let forged_payload = atob_safe_json(&serde_json::json!({
                "access_key": ws.access_key, "room_id": "r", "user_id": "u", "role": "host",
                "type": "app", "version": 2, "iat": 0, "nbf": 0, "exp": u64::MAX / 2, "jti": "x"
            }));
            parts[1] = b64url(forged_payload.as_bytes());
            let err = verify_auth_token(store, &parts.join("."), SystemTime::now()).unwrap_err();
            assert!(matches!(err, TokenError::BadSignature), "{err}");
        }
    }

    #[test]
    fn an_unknown_access_key_is_refused() {
        for (b, ws) in setups("key") {
            let store = &b.store;
            let stranger = Workspace { access_key: "000000000000000000000000".into(), ..ws };
            let token = mint_auth_token(&stranger, "r", "u", "host", HOUR, SystemTime::now());
            let err = verify_auth_token(store, &token, SystemTime::now()).unwrap_err();
            assert!(matches!(err, TokenError::UnknownAccessKey), "{err}");
        }
    }

    #[test]
    fn a_management_token_is_not_an_auth_token() {
        for (b, ws) in setups("type") {
            let store = &b.store;
            let token = mint_management_token(&ws, HOUR, SystemTime::now());
            assert!(payload_is_atob_safe(&token));
            let err = verify_auth_token(store, &token, SystemTime::now()).unwrap_err();
            assert!(matches!(&err, TokenError::WrongType { found: t, .. } if t == "management"), "{err}");
        }
    }

    #[test]
    fn malformed_tokens_are_refused_with_a_reason() {
        for (b, ws) in setups("malformed") {
            let store = &b.store;
            let now = SystemTime::now();
            let header = b64url(br#"{"typ":"JWT","alg":"HS256"}"#);
            let cases = [
                String::new(),
                "abc".into(),
                "a.b".into(),
                "a.b.c.d".into(),
                format!("{header}.!!!.sig"),
                format!("{header}.{}.sig", b64url(b"not json")),
                format!("{header}.{}.sig", b64url(br#"{"room_id":"r"}"#)),
                format!("{header}.{}.sig", b64url(br#"{"access_key":42}"#)),
            ];
            for t in &cases {
                let err = verify_auth_token(store, t, now).unwrap_err();
                assert!(matches!(err, TokenError::Malformed(_)), "{t:?}: {err}");
            }
            // Signed correctly but missing the room: still malformed, not accepted.
            let no_room =
                serde_json::json!({"access_key": ws.access_key, "role": "host", "type": "app", "exp": u64::MAX / 2});
            let raw = serde_json::value::RawValue::from_string(no_room.to_string()).unwrap();
            let t = jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &raw,
                &EncodingKey::from_secret(ws.secret.as_bytes()),
            )
            .unwrap();
            assert!(
                matches!(verify_auth_token(store, &t, now), Err(TokenError::Malformed(m)) if m.contains("room_id"))
            );
            // HS384 with the right secret: only HS256 is accepted.
            let hs384 = jsonwebtoken::encode(
                &Header::new(Algorithm::HS384),
                &serde_json::json!({"access_key": ws.access_key, "room_id": "r", "role": "host", "type": "app", "exp": u64::MAX / 2}),
                &EncodingKey::from_secret(ws.secret.as_bytes()),
            )
            .unwrap();
            assert!(matches!(verify_auth_token(store, &hs384, now), Err(TokenError::Malformed(_))));
        }
    }

    /// base64url without padding, written here so the tests do not need another dependency.
    fn b64url(data: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut s = String::new();
        for chunk in data.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                s.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        s
    }
}
