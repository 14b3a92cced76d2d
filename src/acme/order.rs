//! One ACME order, start to certificate (RFC 8555 §7.4), through `instant-acme`: new order, an
//! HTTP-01 token per pending authorization into the cluster's token table, a wait until every
//! live peer holds them, "ready" to the CA, poll, finalize with a fresh ECDSA P-256 key, and
//! download the chain. Tokens are withdrawn when the order ends, however it ends (a guard).
//! Every failure is one `OrderError`: the step and the CA's own reason.

use std::sync::Arc;
use std::time::{Duration, Instant};

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, OrderStatus, Problem,
    RetryPolicy,
};

use crate::cluster::challenges::TokenTable;

/// Longest wait for the CA to validate every authorization.
pub const VALIDATION_TIMEOUT: Duration = Duration::from_secs(90);
/// Longest wait for the certificate once finalized.
pub const ISSUANCE_TIMEOUT: Duration = Duration::from_secs(60);
/// Time to live of a shared token (the order is abandoned long before).
pub const TOKEN_TTL: Duration = Duration::from_secs(300);

/// What a successful order hands back.
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
}

/// Why an order failed: the step, and the CA's or the transport's reason.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{step}: {reason}")]
pub struct OrderError {
    pub step: &'static str,
    pub reason: String,
}

fn err(step: &'static str) -> impl Fn(instant_acme::Error) -> OrderError {
    move |e| OrderError {
        step,
        reason: error_line(&e),
    }
}

/// An instant-acme error as one line, with the CA's problem type shortened.
pub fn error_line(e: &instant_acme::Error) -> String {
    match e {
        instant_acme::Error::Api(p) => problem_line(p),
        other => other.to_string().replace('\n', " "),
    }
}

fn problem_line(p: &Problem) -> String {
    let kind = p
        .r#type
        .as_deref()
        .map(|t| t.trim_start_matches("urn:ietf:params:acme:error:"))
        .unwrap_or("error");
    let detail = p.detail.as_deref().unwrap_or("").replace('\n', " ");
    format!("{kind}: {detail}")
}

/// What an order needs besides the account.
pub struct Ctx<'a> {
    pub names: &'a [String],
    pub table: &'a Arc<TokenTable>,
    /// Configured peers that should hold our tokens (empty: no cluster, or sharing off).
    pub peers: Vec<String>,
    /// A peer not heard for longer than this is down and not waited for.
    pub fresh: Duration,
    pub challenge_wait: Duration,
}

/// Our tokens in the table; withdrawn on drop, so no path out of `run` leaves one behind.
struct Tokens {
    table: Arc<TokenTable>,
    list: Vec<String>,
}

impl Drop for Tokens {
    fn drop(&mut self) {
        let now = Instant::now();
        for t in &self.list {
            self.table.withdraw_own(t, now);
        }
    }
}

pub async fn run(account: &Account, ctx: &Ctx<'_>) -> Result<Issued, OrderError> {
    let ids: Vec<Identifier> = ctx
        .names
        .iter()
        .map(|n| Identifier::Dns(n.clone()))
        .collect();
    let mut order = account
        .new_order(&NewOrder::new(&ids))
        .await
        .map_err(err("new order"))?;
    let mut tokens = Tokens {
        table: ctx.table.clone(),
        list: Vec::new(),
    };

    // 1. Every pending authorization's HTTP-01 token into the table (and so to the peers).
    let mut authzs = order.authorizations();
    while let Some(a) = authzs.next().await {
        let mut a = a.map_err(err("authorization"))?;
        let name = a.identifier().to_string();
        match a.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => {
                return Err(OrderError {
                    step: "authorization",
                    reason: format!("{name} is {other:?}"),
                })
            }
        }
        let ch = a
            .challenge(ChallengeType::Http01)
            .ok_or_else(|| OrderError {
                step: "authorization",
                reason: format!("the CA offers no http-01 challenge for {name}"),
            })?;
        let key_auth = ch.key_authorization();
        ctx.table
            .add_own(&ch.token, key_auth.as_str(), TOKEN_TTL, Instant::now())
            .map_err(|e| OrderError {
                step: "authorization",
                reason: format!("{name}: {e}"),
            })?;
        tokens.list.push(ch.token.clone());
    }

    // 2. Wait until every live peer can answer them (validation may reach any node).
    if !tokens.list.is_empty() && !ctx.peers.is_empty() {
        let start = Instant::now();
        loop {
            let now = Instant::now();
            let missing = ctx
                .table
                .unacked_peers(&tokens.list, &ctx.peers, ctx.fresh, now);
            if missing.is_empty() {
                tracing::info!(
                    "acme: {} token(s) held by every live peer after {:?}",
                    tokens.list.len(),
                    now - start
                );
                break;
            }
            if now - start >= ctx.challenge_wait {
                tracing::warn!(
                    "acme: peer(s) {} did not confirm our challenge tokens within {:?}; asking \
                     the CA to validate anyway (a validation that reaches them fails)",
                    missing.join(", "),
                    ctx.challenge_wait
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // 3. Tell the CA each challenge is ready.
    let mut authzs = order.authorizations();
    while let Some(a) = authzs.next().await {
        let mut a = a.map_err(err("authorization"))?;
        if a.status != AuthorizationStatus::Pending {
            continue;
        }
        if let Some(mut ch) = a.challenge(ChallengeType::Http01) {
            ch.set_ready().await.map_err(err("challenge"))?;
        }
    }

    // 4. Wait for validation.
    let policy = RetryPolicy::new()
        .initial_delay(Duration::from_millis(200))
        .backoff(1.5)
        .timeout(VALIDATION_TIMEOUT);
    let status = order.poll_ready(&policy).await.map_err(err("validation"))?;
    if status != OrderStatus::Ready {
        return Err(OrderError {
            step: "validation",
            reason: invalid_reasons(&mut order)
                .await
                .unwrap_or_else(|| format!("order is {status:?}")),
        });
    }

    // 5. Finalize with a new key, fetch the chain.
    let key_pem = order.finalize().await.map_err(err("finalize"))?;
    let policy = RetryPolicy::new()
        .initial_delay(Duration::from_millis(200))
        .timeout(ISSUANCE_TIMEOUT);
    let chain_pem = order
        .poll_certificate(&policy)
        .await
        .map_err(err("certificate"))?;
    drop(tokens);
    Ok(Issued { chain_pem, key_pem })
}

/// The CA's reasons for the failed authorizations: `name: type: detail; ...`.
async fn invalid_reasons(order: &mut instant_acme::Order) -> Option<String> {
    let mut reasons = Vec::new();
    let mut authzs = order.authorizations();
    while let Some(Ok(mut a)) = authzs.next().await {
        let name = a.identifier().to_string();
        let Ok(state) = a.refresh().await else {
            continue;
        };
        if state.status != AuthorizationStatus::Invalid {
            continue;
        }
        for c in &state.challenges {
            if let Some(p) = &c.error {
                reasons.push(format!("{name}: {}", problem_line(p)));
            }
        }
    }
    (!reasons.is_empty()).then(|| reasons.join("; "))
}
