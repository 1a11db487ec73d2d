//! Bearer-token authentication: verifying a JWT into a [`Principal`], and minting HS256 tokens.
//!
//! Keys come from [`AuthConfig`]: an HS256 secret and/or RS256/ES256 public keys in PEM files,
//! picked by the token's `kid`. Only HS256, RS256 and ES256 are accepted, and the configured key
//! fixes the algorithm, never the token alone. Taking the token out of an HTTP request is not
//! done here: that lives in `http`.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::domain::{Role, WorkspaceId};

/// The shortest HS256 secret accepted, in bytes: the output size of SHA-256 (RFC 7518 §3.2).
const MIN_HS256_SECRET_BYTES: usize = 32;

/// The smallest RSA modulus accepted, in bits.
const MIN_RSA_BITS: usize = 2048;

/// The header `alg` values this module accepts, as they are spelled in a token.
const ACCEPTED_ALGORITHMS: [&str; 3] = ["HS256", "RS256", "ES256"];

/// The registered claims `jsonwebtoken` may name in an error, as `'static` strings.
const SPEC_CLAIMS: [&str; 5] = ["exp", "nbf", "iss", "aud", "sub"];

/// Where the verification keys come from.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// The symmetric HS256 key, at least 32 bytes; the only key [`Authenticator::mint`] uses.
    pub hs256_secret: Option<SecretString>,
    /// RS256/ES256 public keys in PEM files, selected by the token header's `kid`.
    pub public_keys: Vec<PublicKeyConfig>,
    /// The `iss` every token must carry (callers default to `"leadgate"`).
    pub issuer: String,
    /// The `aud` every token must carry, alone or in an array (callers default to `"leadgate"`).
    pub audience: String,
    /// Clock-skew allowance for `exp` and `nbf`, in seconds (callers use 30).
    pub leeway_secs: u64,
}

/// One asymmetric verification key.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct PublicKeyConfig {
    /// The key id a token names in its header's `kid`.
    pub kid: String,
    /// The only algorithm this key verifies.
    pub algorithm: KeyAlgorithm,
    /// A PEM file holding the public key (`-----BEGIN PUBLIC KEY-----`, or PKCS#1 for RSA).
    pub path: PathBuf,
}

/// The asymmetric algorithms a public key can be configured for.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum KeyAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256; the key must have at least 2048 bits.
    RS256,
    /// ECDSA on P-256 with SHA-256.
    ES256,
}

impl KeyAlgorithm {
    fn jwt_algorithm(self) -> Algorithm {
        match self {
            KeyAlgorithm::RS256 => Algorithm::RS256,
            KeyAlgorithm::ES256 => Algorithm::ES256,
        }
    }
}

/// The verified caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub`: who is calling, never empty.
    pub subject: String,
    /// The token's `ws`: the only workspace the caller may touch.
    pub workspace_id: WorkspaceId,
    /// The token's `role`: what the caller may do in that workspace.
    pub role: Role,
}

/// Why a token was refused. Every message is short and safe to show a client: none repeats the
/// token or any key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// `exp` lies in the past, beyond the leeway.
    #[error("token expired")]
    Expired,
    /// The signature does not match the key the header selects.
    #[error("token signature is invalid")]
    InvalidSignature,
    /// The header's `alg` is not HS256/RS256/ES256, has no key configured, or does not match the
    /// algorithm of the key its `kid` names.
    #[error("token algorithm is not accepted")]
    UnsupportedAlgorithm,
    /// The header's `kid` names no configured key, or is missing where several keys could apply.
    #[error("token signing key is not known")]
    UnknownKey,
    /// `iss` is not the configured issuer.
    #[error("token issuer is not accepted")]
    WrongIssuer,
    /// `aud` does not contain the configured audience.
    #[error("token audience is not accepted")]
    WrongAudience,
    /// The token is not a readable JWT; the text is a short generic reason.
    #[error("{0}")]
    Malformed(String),
    /// A required claim is absent (or `sub` is empty).
    #[error("token is missing the `{0}` claim")]
    MissingClaim(&'static str),
    /// A claim is present but has the wrong type or an unusable value.
    #[error("token claim `{0}` is invalid")]
    InvalidClaim(&'static str),
}

impl AuthError {
    fn malformed(reason: &str) -> Self {
        AuthError::Malformed(reason.to_owned())
    }
}

/// Why an [`Authenticator`] could not be built from an [`AuthConfig`].
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// Neither an HS256 secret nor any public key is configured.
    #[error("no token verification key is configured: set an HS256 secret or a public key")]
    NoKeys,
    /// A public key file could not be read.
    #[error("cannot read public key `{kid}` from {}: {source}", path.display())]
    ReadKey {
        /// The key id of the entry.
        kid: String,
        /// The file that could not be read.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// A public key file was read but does not hold a usable key for its algorithm.
    #[error("public key `{kid}` is not usable: {reason}")]
    BadKey {
        /// The key id of the entry.
        kid: String,
        /// What is wrong with it (never the key itself).
        reason: String,
    },
    /// Two public keys share one key id.
    #[error("public key id `{0}` is configured more than once")]
    DuplicateKid(String),
    /// The HS256 secret is shorter than 32 bytes.
    #[error("the HS256 secret must be at least 32 bytes long")]
    ShortSecret,
}

/// Verifies bearer tokens and mints HS256 ones. Cheap to clone: the keys are shared.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Keys>,
}

/// The loaded keys behind an [`Authenticator`].
struct Keys {
    hs256: Option<SharedSecret>,
    public: Vec<PublicKey>,
    issuer: String,
    audience: String,
}

/// The HS256 secret, ready to sign and to verify.
struct SharedSecret {
    signing: EncodingKey,
    verifying: DecodingKey,
    validation: Validation,
}

/// One loaded public key with the validation rules for its algorithm.
struct PublicKey {
    kid: String,
    algorithm: KeyAlgorithm,
    key: DecodingKey,
    validation: Validation,
}

impl Authenticator {
    /// Loads the configured keys; at least one (the HS256 secret or a public key) is required.
    pub fn new(config: &AuthConfig) -> Result<Self, AuthConfigError> {
        if config.hs256_secret.is_none() && config.public_keys.is_empty() {
            return Err(AuthConfigError::NoKeys);
        }
        let hs256 = config
            .hs256_secret
            .as_ref()
            .map(|secret| SharedSecret::new(secret, config))
            .transpose()?;
        let mut public: Vec<PublicKey> = Vec::with_capacity(config.public_keys.len());
        for entry in &config.public_keys {
            if public.iter().any(|key| key.kid == entry.kid) {
                return Err(AuthConfigError::DuplicateKid(entry.kid.clone()));
            }
            public.push(PublicKey::load(entry, config)?);
        }
        Ok(Self {
            inner: Arc::new(Keys {
                hs256,
                public,
                issuer: config.issuer.clone(),
                audience: config.audience.clone(),
            }),
        })
    }

    /// Checks the token's algorithm, key, signature and claims, and returns who it speaks for.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let header = read_header(token)?;
        let (key, validation) = self.select_key(&header)?;
        let data = jsonwebtoken::decode::<ReceivedClaims>(token, key, validation).map_err(from_jwt_error)?;
        data.claims.into_principal()
    }

    /// Mints an HS256 token; None when no HS256 secret is configured.
    ///
    /// The token carries `iat` = now, `exp` = now + `ttl` (whole seconds), and the configured
    /// `iss` and `aud`.
    pub fn mint(
        &self,
        subject: &str,
        workspace_id: WorkspaceId,
        role: Role,
        ttl: Duration,
    ) -> Option<String> {
        let secret = self.inner.hs256.as_ref()?;
        let now = jsonwebtoken::get_current_timestamp();
        let claims = MintedClaims {
            sub: subject,
            ws: workspace_id.as_uuid(),
            role: role.as_str(),
            iat: now,
            exp: now.saturating_add(ttl.as_secs()),
            iss: &self.inner.issuer,
            aud: &self.inner.audience,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &secret.signing).ok()
    }

    /// Picks the key the header asks for, refusing any key whose algorithm differs from `alg`.
    fn select_key(&self, header: &Header) -> Result<(&DecodingKey, &Validation), AuthError> {
        let wanted = match header.alg {
            Algorithm::HS256 => {
                return self
                    .inner
                    .hs256
                    .as_ref()
                    .map(|secret| (&secret.verifying, &secret.validation))
                    .ok_or(AuthError::UnsupportedAlgorithm);
            }
            Algorithm::RS256 => KeyAlgorithm::RS256,
            Algorithm::ES256 => KeyAlgorithm::ES256,
            _ => return Err(AuthError::UnsupportedAlgorithm),
        };
        let mut candidates = self.inner.public.iter().filter(|key| key.algorithm == wanted);
        let Some(first) = candidates.next() else {
            return Err(AuthError::UnsupportedAlgorithm);
        };
        let key = match header.kid.as_deref() {
            Some(kid) => {
                let key = self
                    .inner
                    .public
                    .iter()
                    .find(|key| key.kid == kid)
                    .ok_or(AuthError::UnknownKey)?;
                if key.algorithm != wanted {
                    return Err(AuthError::UnsupportedAlgorithm);
                }
                key
            }
            // Without a `kid`, only an unambiguous key may be used.
            None if candidates.next().is_none() => first,
            None => return Err(AuthError::UnknownKey),
        };
        Ok((&key.key, &key.validation))
    }
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let public: Vec<(&str, KeyAlgorithm)> = self
            .inner
            .public
            .iter()
            .map(|key| (key.kid.as_str(), key.algorithm))
            .collect();
        f.debug_struct("Authenticator")
            .field("hs256", &self.inner.hs256.is_some())
            .field("public_keys", &public)
            .field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .finish()
    }
}

impl SharedSecret {
    fn new(secret: &SecretString, config: &AuthConfig) -> Result<Self, AuthConfigError> {
        let bytes = secret.expose_secret().as_bytes();
        if bytes.len() < MIN_HS256_SECRET_BYTES {
            return Err(AuthConfigError::ShortSecret);
        }
        let signing = EncodingKey::from_secret(bytes).map_err(|_| AuthConfigError::ShortSecret)?;
        let verifying = DecodingKey::from_secret(bytes).map_err(|_| AuthConfigError::ShortSecret)?;
        Ok(Self {
            signing,
            verifying,
            validation: validation_for(Algorithm::HS256, config),
        })
    }
}

impl PublicKey {
    fn load(entry: &PublicKeyConfig, config: &AuthConfig) -> Result<Self, AuthConfigError> {
        let bad = |reason: &str| AuthConfigError::BadKey {
            kid: entry.kid.clone(),
            reason: reason.to_owned(),
        };
        if entry.kid.is_empty() {
            return Err(bad("the key id is empty"));
        }
        let pem = std::fs::read(&entry.path).map_err(|source| AuthConfigError::ReadKey {
            kid: entry.kid.clone(),
            path: entry.path.clone(),
            source,
        })?;
        let key = match entry.algorithm {
            KeyAlgorithm::RS256 => DecodingKey::from_rsa_pem(&pem),
            KeyAlgorithm::ES256 => DecodingKey::from_ec_pem(&pem),
        }
        .map_err(|_| bad("the file does not hold a PEM public key of the configured algorithm"))?;
        check_public_key(&key, entry.algorithm).map_err(|reason| bad(&reason))?;
        Ok(Self {
            kid: entry.kid.clone(),
            algorithm: entry.algorithm,
            key,
            validation: validation_for(entry.algorithm.jwt_algorithm(), config),
        })
    }
}

/// Parses the key once at start-up, so a wrong or weak key fails here and not on first use.
fn check_public_key(key: &DecodingKey, algorithm: KeyAlgorithm) -> Result<(), String> {
    let jwk = Jwk::from_decoding_key(key, Some(algorithm.jwt_algorithm()))
        .map_err(|_| "the key cannot be parsed as a public key".to_owned())?;
    match (algorithm, &jwk.algorithm) {
        (KeyAlgorithm::RS256, AlgorithmParameters::RSA(rsa)) => {
            let modulus = URL_SAFE_NO_PAD
                .decode(&rsa.n)
                .map_err(|_| "the RSA modulus cannot be read".to_owned())?;
            let bits = significant_bits(&modulus);
            if bits < MIN_RSA_BITS {
                return Err(format!(
                    "the RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"
                ));
            }
            Ok(())
        }
        (KeyAlgorithm::ES256, AlgorithmParameters::EllipticCurve(ec)) => {
            if ec.curve != EllipticCurve::P256 {
                return Err("ES256 needs a P-256 key".to_owned());
            }
            // Building a verifier checks that the point lies on the curve.
            jsonwebtoken::crypto::verify("", b"", key, Algorithm::ES256)
                .map(|_| ())
                .map_err(|_| "the key is not a valid P-256 point".to_owned())
        }
        _ => Err("the key does not match the configured algorithm".to_owned()),
    }
}

/// The bit length of a big-endian unsigned integer.
fn significant_bits(big_endian: &[u8]) -> usize {
    let digits: &[u8] = match big_endian.iter().position(|byte| *byte != 0) {
        Some(first) => &big_endian[first..],
        None => &[],
    };
    match digits.first() {
        Some(top) => (digits.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
        None => 0,
    }
}

/// The checks every token for `algorithm` goes through after its signature.
fn validation_for(algorithm: Algorithm, config: &AuthConfig) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.leeway = config.leeway_secs;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.validate_aud = true;
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.set_issuer(&[config.issuer.as_str()]);
    validation.set_audience(&[config.audience.as_str()]);
    validation
}

/// Reads the header and refuses any algorithm but HS256, RS256 and ES256.
fn read_header(token: &str) -> Result<Header, AuthError> {
    match jsonwebtoken::decode_header(token) {
        Ok(header) => match header.alg {
            Algorithm::HS256 | Algorithm::RS256 | Algorithm::ES256 => Ok(header),
            _ => Err(AuthError::UnsupportedAlgorithm),
        },
        Err(_) => Err(classify_unreadable_header(token)),
    }
}

/// Tells an `alg` that `jsonwebtoken` does not know (such as `none`) from a broken token.
fn classify_unreadable_header(token: &str) -> AuthError {
    #[derive(Deserialize)]
    struct AlgOnly {
        alg: String,
    }

    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return AuthError::malformed("token is not a well-formed JWT");
    };
    let Ok(json) = URL_SAFE_NO_PAD.decode(header) else {
        return AuthError::malformed("token header is not readable");
    };
    match serde_json::from_slice::<AlgOnly>(&json) {
        Ok(only) if !ACCEPTED_ALGORITHMS.contains(&only.alg.as_str()) => AuthError::UnsupportedAlgorithm,
        _ => AuthError::malformed("token header is not readable"),
    }
}

/// Translates a `jsonwebtoken` failure into a client-safe [`AuthError`].
fn from_jwt_error(error: jsonwebtoken::errors::Error) -> AuthError {
    match error.into_kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::InvalidSignature => AuthError::InvalidSignature,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(name) => spec_claim(&name).map_or_else(
            || AuthError::malformed("token lacks a required claim"),
            AuthError::MissingClaim,
        ),
        ErrorKind::InvalidClaimFormat(name) => spec_claim(&name).map_or_else(
            || AuthError::malformed("token has an invalid claim"),
            AuthError::InvalidClaim,
        ),
        ErrorKind::ImmatureSignature => AuthError::malformed("token is not valid yet"),
        ErrorKind::InvalidAlgorithm | ErrorKind::UnsupportedAlgorithm | ErrorKind::MissingAlgorithm => {
            AuthError::UnsupportedAlgorithm
        }
        _ => AuthError::malformed("token is not a well-formed JWT"),
    }
}

/// The `'static` name of a registered claim, if `name` is one.
fn spec_claim(name: &str) -> Option<&'static str> {
    SPEC_CLAIMS.into_iter().find(|claim| *claim == name)
}

/// The claims a minted token carries.
#[derive(Serialize)]
struct MintedClaims<'a> {
    sub: &'a str,
    ws: Uuid,
    role: &'static str,
    iat: u64,
    exp: u64,
    iss: &'a str,
    aud: &'a str,
}

/// The application claims as read from a token whose signature and registered claims
/// (`exp`, `iss`, `aud`) `jsonwebtoken` has already checked. Each is kept as loose JSON so a
/// missing or mistyped claim is reported by name instead of as an unreadable payload.
#[derive(Deserialize)]
struct ReceivedClaims {
    sub: Option<Value>,
    ws: Option<Value>,
    role: Option<Value>,
}

impl ReceivedClaims {
    fn into_principal(self) -> Result<Principal, AuthError> {
        let subject = text_claim(self.sub, "sub")?;
        if subject.trim().is_empty() {
            return Err(AuthError::MissingClaim("sub"));
        }
        let workspace_id = Uuid::try_parse(&text_claim(self.ws, "ws")?)
            .map(WorkspaceId::from_uuid)
            .map_err(|_| AuthError::InvalidClaim("ws"))?;
        let role = Role::parse(&text_claim(self.role, "role")?).ok_or(AuthError::InvalidClaim("role"))?;
        Ok(Principal {
            subject,
            workspace_id,
            role,
        })
    }
}

/// A claim that must be a JSON string.
fn text_claim(value: Option<Value>, name: &'static str) -> Result<String, AuthError> {
    match value {
        None => Err(AuthError::MissingClaim(name)),
        Some(Value::String(text)) => Ok(text),
        Some(_) => Err(AuthError::InvalidClaim(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;

    const SECRET: &str = "a-test-only-hs256-secret-of-40-bytes!!!!";
    const WS: &str = "0190f3a6-7b1c-7d2e-8f40-123456789abc";
    const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/auth/testdata");

    fn fixture(name: &str) -> PathBuf {
        Path::new(TESTDATA).join(name)
    }

    fn config() -> AuthConfig {
        AuthConfig {
            hs256_secret: Some(SecretString::from(SECRET)),
            public_keys: Vec::new(),
            issuer: "leadgate".to_owned(),
            audience: "leadgate".to_owned(),
            leeway_secs: 30,
        }
    }

    fn public_key(kid: &str, algorithm: KeyAlgorithm, file: &str) -> PublicKeyConfig {
        PublicKeyConfig {
            kid: kid.to_owned(),
            algorithm,
            path: fixture(file),
        }
    }

    /// Only public keys: `rsa-a` and `rsa-b` (RS256) and `ec-a` (ES256).
    fn public_config() -> AuthConfig {
        AuthConfig {
            hs256_secret: None,
            public_keys: vec![
                public_key("rsa-a", KeyAlgorithm::RS256, "rs256-a.public.pem"),
                public_key("rsa-b", KeyAlgorithm::RS256, "rs256-b.public.pem"),
                public_key("ec-a", KeyAlgorithm::ES256, "es256-a.public.pem"),
            ],
            ..config()
        }
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn claims() -> Value {
        json!({
            "sub": "user-1",
            "ws": WS,
            "role": "member",
            "iat": now(),
            "exp": now() + 600,
            "iss": "leadgate",
            "aud": "leadgate",
        })
    }

    fn with(mut claims: Value, name: &str, value: Value) -> Value {
        claims[name] = value;
        claims
    }

    fn without(mut claims: Value, name: &str) -> Value {
        claims.as_object_mut().unwrap().remove(name);
        claims
    }

    fn sign_hmac(algorithm: Algorithm, secret: &[u8], claims: &Value) -> String {
        let key = EncodingKey::from_secret(secret).unwrap();
        jsonwebtoken::encode(&Header::new(algorithm), claims, &key).unwrap()
    }

    fn sign_hs256(claims: &Value) -> String {
        sign_hmac(Algorithm::HS256, SECRET.as_bytes(), claims)
    }

    fn sign_pem(algorithm: Algorithm, kid: Option<&str>, private: &str, claims: &Value) -> String {
        let pem = std::fs::read(fixture(private)).unwrap();
        let key = match algorithm {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
            Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).unwrap(),
            other => panic!("no fixture for {other:?}"),
        };
        let header = Header {
            kid: kid.map(str::to_owned),
            ..Header::new(algorithm)
        };
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }

    fn expected() -> Principal {
        Principal {
            subject: "user-1".to_owned(),
            workspace_id: WorkspaceId::from_uuid(Uuid::parse_str(WS).unwrap()),
            role: Role::Member,
        }
    }

    fn hs256() -> Authenticator {
        Authenticator::new(&config()).unwrap()
    }

    fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    #[test]
    fn hs256_token_round_trips() {
        assert_eq!(hs256().verify(&sign_hs256(&claims())), Ok(expected()));
    }

    #[test]
    fn minted_token_round_trips_with_configured_claims() {
        let auth = hs256();
        let principal = expected();
        let token = auth
            .mint(
                &principal.subject,
                principal.workspace_id,
                principal.role,
                Duration::from_secs(900),
            )
            .unwrap();
        assert_eq!(auth.verify(&token), Ok(principal));

        let raw: Value = jsonwebtoken::dangerous::insecure_decode_claims(&token).unwrap();
        assert_eq!(raw["iss"], "leadgate");
        assert_eq!(raw["aud"], "leadgate");
        assert_eq!(raw["ws"], WS);
        assert_eq!(raw["role"], "member");
        assert_eq!(raw["exp"].as_u64().unwrap() - raw["iat"].as_u64().unwrap(), 900);
        assert_eq!(jsonwebtoken::decode_header(&token).unwrap().alg, Algorithm::HS256);
    }

    #[test]
    fn mint_without_hs256_secret_is_none() {
        let auth = Authenticator::new(&public_config()).unwrap();
        assert_eq!(
            auth.mint("user-1", WorkspaceId::new(), Role::Admin, Duration::from_secs(60)),
            None
        );
    }

    #[test]
    fn expired_token_is_expired() {
        let token = sign_hs256(&with(claims(), "exp", json!(now() - 120)));
        assert_eq!(hs256().verify(&token), Err(AuthError::Expired));
    }

    #[test]
    fn expiry_within_leeway_is_accepted() {
        let token = sign_hs256(&with(claims(), "exp", json!(now() - 5)));
        assert_eq!(hs256().verify(&token), Ok(expected()));
    }

    #[test]
    fn wrong_secret_is_invalid_signature() {
        let token = sign_hmac(
            Algorithm::HS256,
            b"another-secret-that-is-long-enough-too",
            &claims(),
        );
        assert_eq!(hs256().verify(&token), Err(AuthError::InvalidSignature));
    }

    #[test]
    fn alg_none_is_unsupported_algorithm() {
        let token = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&claims().to_string())
        );
        assert_eq!(hs256().verify(&token), Err(AuthError::UnsupportedAlgorithm));
    }

    #[test]
    fn hs512_is_unsupported_algorithm() {
        let token = sign_hmac(Algorithm::HS512, SECRET.as_bytes(), &claims());
        assert_eq!(hs256().verify(&token), Err(AuthError::UnsupportedAlgorithm));
    }

    #[test]
    fn unknown_alg_name_is_unsupported_algorithm() {
        let token = format!(
            "{}.{}.c2ln",
            b64(r#"{"alg":"HS1024"}"#),
            b64(&claims().to_string())
        );
        assert_eq!(hs256().verify(&token), Err(AuthError::UnsupportedAlgorithm));
    }

    #[test]
    fn wrong_issuer_is_wrong_issuer() {
        let token = sign_hs256(&with(claims(), "iss", json!("someone-else")));
        assert_eq!(hs256().verify(&token), Err(AuthError::WrongIssuer));
    }

    #[test]
    fn wrong_audience_is_wrong_audience() {
        let token = sign_hs256(&with(claims(), "aud", json!("someone-else")));
        assert_eq!(hs256().verify(&token), Err(AuthError::WrongAudience));
    }

    #[test]
    fn audience_array_containing_ours_is_accepted() {
        let token = sign_hs256(&with(claims(), "aud", json!(["crm", "leadgate"])));
        assert_eq!(hs256().verify(&token), Ok(expected()));
    }

    #[test]
    fn missing_exp_is_missing_claim() {
        let token = sign_hs256(&without(claims(), "exp"));
        assert_eq!(hs256().verify(&token), Err(AuthError::MissingClaim("exp")));
    }

    #[test]
    fn missing_iss_is_missing_claim() {
        let token = sign_hs256(&without(claims(), "iss"));
        assert_eq!(hs256().verify(&token), Err(AuthError::MissingClaim("iss")));
    }

    #[test]
    fn missing_or_empty_sub_is_missing_claim() {
        for token in [
            sign_hs256(&without(claims(), "sub")),
            sign_hs256(&with(claims(), "sub", json!(""))),
        ] {
            assert_eq!(hs256().verify(&token), Err(AuthError::MissingClaim("sub")));
        }
    }

    #[test]
    fn bad_ws_is_invalid_claim() {
        for ws in [json!("not-a-uuid"), json!(42)] {
            let token = sign_hs256(&with(claims(), "ws", ws));
            assert_eq!(hs256().verify(&token), Err(AuthError::InvalidClaim("ws")));
        }
    }

    #[test]
    fn unknown_role_is_invalid_claim() {
        let token = sign_hs256(&with(claims(), "role", json!("owner")));
        assert_eq!(hs256().verify(&token), Err(AuthError::InvalidClaim("role")));
    }

    #[test]
    fn future_nbf_is_refused() {
        let token = sign_hs256(&with(claims(), "nbf", json!(now() + 600)));
        assert!(matches!(hs256().verify(&token), Err(AuthError::Malformed(_))));
    }

    #[test]
    fn garbage_is_malformed() {
        let auth = hs256();
        for token in ["", "garbage", "a.b", "a.b.c", "a.b.c.d", "!!!.@@@.###"] {
            assert!(
                matches!(auth.verify(token), Err(AuthError::Malformed(_))),
                "{token:?} should be malformed"
            );
        }
        let not_json = format!("{}.{}.c2ln", b64("alg"), b64("{}"));
        assert!(matches!(auth.verify(&not_json), Err(AuthError::Malformed(_))));
        let message = format!("{}.{}", b64(r#"{"alg":"HS256"}"#), b64("nope"));
        let key = EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256);
        let payload_not_json = format!("{message}.{}", signature.unwrap());
        assert!(matches!(
            auth.verify(&payload_not_json),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn rs256_with_kid_round_trips() {
        let auth = Authenticator::new(&public_config()).unwrap();
        let token = sign_pem(Algorithm::RS256, Some("rsa-a"), "rs256-a.private.pem", &claims());
        assert_eq!(auth.verify(&token), Ok(expected()));
    }

    #[test]
    fn es256_with_kid_round_trips() {
        let auth = Authenticator::new(&public_config()).unwrap();
        let token = sign_pem(Algorithm::ES256, Some("ec-a"), "es256-a.private.pem", &claims());
        assert_eq!(auth.verify(&token), Ok(expected()));
    }

    #[test]
    fn rotated_keys_both_verify() {
        let auth = Authenticator::new(&public_config()).unwrap();
        let old = sign_pem(Algorithm::RS256, Some("rsa-a"), "rs256-a.private.pem", &claims());
        let new = sign_pem(Algorithm::RS256, Some("rsa-b"), "rs256-b.private.pem", &claims());
        assert_eq!(auth.verify(&old), Ok(expected()));
        assert_eq!(auth.verify(&new), Ok(expected()));
        let swapped = sign_pem(Algorithm::RS256, Some("rsa-a"), "rs256-b.private.pem", &claims());
        assert_eq!(auth.verify(&swapped), Err(AuthError::InvalidSignature));
    }

    #[test]
    fn unknown_kid_is_unknown_key() {
        let auth = Authenticator::new(&public_config()).unwrap();
        let token = sign_pem(Algorithm::RS256, Some("rsa-z"), "rs256-a.private.pem", &claims());
        assert_eq!(auth.verify(&token), Err(AuthError::UnknownKey));
    }

    #[test]
    fn missing_kid_selects_the_only_key_of_that_algorithm() {
        let auth = Authenticator::new(&public_config()).unwrap();
        let token = sign_pem(Algorithm::ES256, None, "es256-a.private.pem", &claims());
        assert_eq!(auth.verify(&token), Ok(expected()));
    }

    #[test]
    fn missing_kid_with_several_keys_is_unknown_key() {
        let auth = Authenticator::new(&public_config()).unwrap();
        let token = sign_pem(Algorithm::RS256, None, "rs256-a.private.pem", &claims());
        assert_eq!(auth.verify(&token), Err(AuthError::UnknownKey));
    }

    #[test]
    fn kid_of_a_key_with_another_algorithm_is_unsupported() {
        let auth = Authenticator::new(&public_config()).unwrap();
        let token = sign_pem(Algorithm::ES256, Some("rsa-a"), "es256-a.private.pem", &claims());
        assert_eq!(auth.verify(&token), Err(AuthError::UnsupportedAlgorithm));
    }

    #[test]
    fn hs256_signed_with_public_pem_is_unsupported_without_secret() {
        let only_rsa = AuthConfig {
            hs256_secret: None,
            public_keys: vec![public_key("rsa-a", KeyAlgorithm::RS256, "rs256-a.public.pem")],
            ..config()
        };
        let auth = Authenticator::new(&only_rsa).unwrap();
        let public_pem = std::fs::read(fixture("rs256-a.public.pem")).unwrap();
        let header = Header {
            kid: Some("rsa-a".to_owned()),
            ..Header::new(Algorithm::HS256)
        };
        let key = EncodingKey::from_secret(&public_pem).unwrap();
        let token = jsonwebtoken::encode(&header, &claims(), &key).unwrap();
        assert_eq!(auth.verify(&token), Err(AuthError::UnsupportedAlgorithm));
    }

    #[test]
    fn algorithm_without_configured_key_is_unsupported() {
        let token = sign_pem(Algorithm::RS256, Some("rsa-a"), "rs256-a.private.pem", &claims());
        assert_eq!(hs256().verify(&token), Err(AuthError::UnsupportedAlgorithm));
    }

    #[test]
    fn short_secret_is_rejected() {
        let short = AuthConfig {
            hs256_secret: Some(SecretString::from("x".repeat(31))),
            ..config()
        };
        assert!(matches!(
            Authenticator::new(&short),
            Err(AuthConfigError::ShortSecret)
        ));
    }

    #[test]
    fn no_keys_is_rejected() {
        let none = AuthConfig {
            hs256_secret: None,
            ..config()
        };
        assert!(matches!(Authenticator::new(&none), Err(AuthConfigError::NoKeys)));
    }

    #[test]
    fn duplicate_kid_is_rejected() {
        let twice = AuthConfig {
            public_keys: vec![
                public_key("k", KeyAlgorithm::RS256, "rs256-a.public.pem"),
                public_key("k", KeyAlgorithm::RS256, "rs256-b.public.pem"),
            ],
            ..config()
        };
        assert!(matches!(
            Authenticator::new(&twice),
            Err(AuthConfigError::DuplicateKid(kid)) if kid == "k"
        ));
    }

    #[test]
    fn missing_key_file_is_read_error() {
        let missing = AuthConfig {
            public_keys: vec![public_key("k", KeyAlgorithm::RS256, "no-such-file.pem")],
            ..config()
        };
        assert!(matches!(
            Authenticator::new(&missing),
            Err(AuthConfigError::ReadKey { kid, .. }) if kid == "k"
        ));
    }

    #[test]
    fn unusable_public_keys_are_rejected() {
        for (algorithm, file) in [
            (KeyAlgorithm::RS256, "rs256-a.private.pem"),
            (KeyAlgorithm::RS256, "rs256-1024.public.pem"),
            (KeyAlgorithm::RS256, "es256-a.public.pem"),
            (KeyAlgorithm::ES256, "es256-a.private.pem"),
            (KeyAlgorithm::ES256, "es384.public.pem"),
            (KeyAlgorithm::ES256, "rs256-a.public.pem"),
            (KeyAlgorithm::ES256, "README.md"),
        ] {
            let bad = AuthConfig {
                public_keys: vec![public_key("k", algorithm, file)],
                ..config()
            };
            let result = Authenticator::new(&bad);
            assert!(
                matches!(&result, Err(AuthConfigError::BadKey { kid, .. }) if kid == "k"),
                "{file} as {algorithm:?} should be refused, got {result:?}"
            );
        }
    }

    #[test]
    fn key_algorithm_deserializes_upper_case() {
        let entry: PublicKeyConfig =
            serde_json::from_value(json!({"kid": "k", "algorithm": "ES256", "path": "/k.pem"})).unwrap();
        assert_eq!(entry.algorithm, KeyAlgorithm::ES256);
    }

    #[test]
    fn error_messages_do_not_echo_the_token() {
        let token = sign_hs256(&with(claims(), "role", json!("owner")));
        let errors = [
            hs256().verify(&token).unwrap_err(),
            hs256().verify("garbage.garbage.garbage").unwrap_err(),
            AuthError::Expired,
            AuthError::UnsupportedAlgorithm,
        ];
        for error in errors {
            let message = error.to_string();
            assert!(message.len() < 64, "{message}");
            assert!(!message.contains("garbage") && !message.contains(&token));
        }
    }

    #[test]
    fn authenticator_is_clone_send_sync_and_debug_hides_keys() {
        fn assert_traits<T: Clone + Send + Sync + 'static>() {}
        assert_traits::<Authenticator>();
        let debug = format!("{:?}", Authenticator::new(&public_config()).unwrap());
        assert!(debug.contains("rsa-a") && !debug.contains("BEGIN"));
        assert!(!format!("{:?}", hs256()).contains(SECRET));
    }
}
