//! Assembles the application from settings: store, services, authenticator, schema and
//! router. `main` and the integration tests both start leadgate through here.

use crate::auth::Authenticator;
use crate::config::Settings;
use crate::domain::{Role, Workspace};
use crate::graphql::{Gateway, Limits};
use crate::http::{HttpConfig, router};
use crate::service::Services;
use crate::store::{PoolOptions, SettingsRepo, Store};
use anyhow::{Context, bail};
use base64::Engine;
use secrecy::SecretString;
use std::time::Duration;

/// Where the HS256 secret generated for demos is kept.
pub const SECRET_SETTING: &str = "auth.hs256_secret";
pub const DEMO_WORKSPACE: &str = "demo";
pub const DEMO_LEADS: u64 = 10_000;

/// Opens the configured database and applies migrations.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let options = PoolOptions {
        max_connections: settings.database_max_connections,
    };
    Store::connect(&settings.database_url, &options)
        .await
        .with_context(|| {
            format!(
                "cannot open database {}",
                crate::store::redact_url(&settings.database_url)
            )
        })
}

/// The HS256 secret: configured, else stored in the database; with `generate`, one is made
/// and stored when neither exists (demo mode).
pub async fn resolve_secret(
    settings: &Settings,
    store: &Store,
    generate: bool,
) -> anyhow::Result<Option<SecretString>> {
    if let Some(secret) = &settings.jwt_secret {
        return Ok(Some(secret.clone()));
    }
    if let Some(stored) = store.setting(SECRET_SETTING).await? {
        return Ok(Some(SecretString::from(stored)));
    }
    if !generate {
        return Ok(None);
    }
    let bytes: [u8; 48] = rand::random();
    let fresh = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let kept = store.setting_or_insert(SECRET_SETTING, &fresh).await?;
    Ok(Some(SecretString::from(kept)))
}

/// The token verifier, or a message that says how to configure one.
pub async fn authenticator(settings: &Settings, store: &Store, demo: bool) -> anyhow::Result<Authenticator> {
    let secret = resolve_secret(settings, store, demo).await?;
    if secret.is_none() && settings.jwt_public_keys.is_empty() {
        bail!(
            "no token key configured: set LEADGATE_JWT_SECRET (at least 32 bytes), configure \
             jwt_public_keys in leadgate.toml, or start once with `leadgate serve --demo`"
        );
    }
    Authenticator::new(&settings.auth_config(secret)).context("invalid token key configuration")
}

/// A running application's parts.
pub struct App {
    pub services: Services,
    pub auth: Authenticator,
    pub router: axum::Router,
}

/// Builds the whole application on an opened store.
pub fn assemble(
    settings: &Settings,
    store: Store,
    auth: Authenticator,
    graphiql_token: Option<String>,
) -> App {
    let services = Services::new(store);
    let limits = Limits {
        depth: settings.max_depth,
        complexity: settings.max_complexity,
        aliases: settings.max_aliases,
        batch: settings.max_batch,
    };
    let gateway = Gateway::new(services.clone(), limits);
    let http = HttpConfig {
        max_body_bytes: settings.max_body_bytes,
        request_timeout: Duration::from_secs(settings.request_timeout_secs),
        graphiql_token,
    };
    let router = router(gateway, auth.clone(), services.clone(), http);
    App {
        services,
        auth,
        router,
    }
}

/// Creates the demo workspace with synthetic leads on first start; later starts find it
/// and leave it alone. Returns the workspace and how many leads were added now.
pub async fn ensure_demo(services: &Services) -> anyhow::Result<(Workspace, u64)> {
    let (ws, _) = services.workspaces.ensure(DEMO_WORKSPACE, "Demo").await?;
    let counts = services.workspaces.lead_counts(ws.id).await?;
    if counts.active + counts.archived > 0 {
        return Ok((ws, 0));
    }
    let added = crate::bulk::seed(&services.store, &ws, DEMO_LEADS, 42, |_| {}).await?;
    Ok((ws, added))
}

/// Mints an HS256 token, failing clearly when only public keys are configured.
pub fn mint(
    auth: &Authenticator,
    subject: &str,
    ws: &Workspace,
    role: Role,
    ttl: Duration,
) -> anyhow::Result<String> {
    auth.mint(subject, ws.id, role, ttl)
        .context("tokens can only be minted with an HS256 secret (LEADGATE_JWT_SECRET or a demo database)")
}
