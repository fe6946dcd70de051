//! `HubObject` (one, named `global`): the global fan-out for the intelligence
//! and performance streams, and the issuer of single-use stream tickets.
//! Profile objects publish their events here; the hub sends each to the
//! sockets whose subscription matches. (The analytics issue adds the
//! windowed aggregates and the alarm to this object.)
//!
//! What survives hibernation: the sockets and their attachments (filters);
//! tickets live in SQLite storage. `new` only registers the ping auto-response.

use serde::{Deserialize, Serialize};
use serde_json::json;
use worker::{
    durable_object, DurableObject, Env, Request, Response, Result, State, WebSocket, WebSocketIncomingMessage,
};

use crate::clock::now_ms;
use crate::intel::protocol::{AlertNotice, Update};
use crate::platform::{self, reply};

use super::sockets::{self, BEARER_HEADER, STREAM_HEADER};

pub const BINDING: &str = "HUB";
pub const NAME: &str = "global";
/// Socket tags: one per stream the hub serves.
pub const INTEL_TAG: &str = "intel";
pub const PERF_TAG: &str = "perf";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum HubOp {
    Publish {
        #[serde(default)]
        updates: Vec<Update>,
        #[serde(default)]
        alerts: Vec<AlertNotice>,
    },
    IssueTicket,
    ConsumeTicket {
        ticket: String,
    },
}

#[derive(Deserialize)]
struct ExpiryRow {
    expires: f64,
}

#[durable_object]
pub struct HubObject {
    state: State,
    env: Env,
}

impl DurableObject for HubObject {
    fn new(state: State, env: Env) -> Self {
        sockets::enable_auto_pong(&state);
        HubObject { state, env }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let config = match platform::config(&self.env) {
            Ok(c) => c,
            Err(e) => return reply(500, &json!({"error": "config_invalid", "message": e.to_string()})),
        };
        if req.headers().get("upgrade")?.is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
            let tag = match req.headers().get(STREAM_HEADER)?.as_deref() {
                Some(PERF_TAG) => PERF_TAG,
                _ => INTEL_TAG,
            };
            let bearer = req.headers().get(BEARER_HEADER)?.is_some();
            return sockets::accept(&self.state, tag, config.max_stream_clients, bearer);
        }
        let op: HubOp = match req.json().await {
            Ok(op) => op,
            Err(e) => return reply(400, &json!({"error": "bad_op", "message": e.to_string()})),
        };
        let sql = self.state.storage().sql();
        sql.exec("CREATE TABLE IF NOT EXISTS tickets (id TEXT PRIMARY KEY, expires REAL NOT NULL)", None)?;
        match op {
            HubOp::Publish { updates, alerts } => {
                let delivered = sockets::broadcast(&self.state, INTEL_TAG, &updates, &alerts);
                reply(200, &json!({"delivered": delivered}))
            }
            HubOp::IssueTicket => {
                let now = now_ms();
                sql.exec("DELETE FROM tickets WHERE expires < ?", vec![now.into()])?;
                let mut raw = [0u8; 24];
                getrandom::fill(&mut raw).map_err(|e| worker::Error::RustError(e.to_string()))?;
                let ticket = hex::encode(raw);
                let ttl = config.stream_ticket_ttl_ms;
                let expires = now + ttl;
                sql.exec(
                    "INSERT INTO tickets (id, expires) VALUES (?, ?)",
                    vec![ticket.clone().into(), expires.into()],
                )?;
                reply(200, &json!({"ticket": ticket, "expiresAt": sockets::iso(expires), "expiresIn": ttl / 1000.0}))
            }
            HubOp::ConsumeTicket { ticket } => {
                // Read and delete with no await in between: single use even
                // under concurrent upgrades.
                let rows = sql
                    .exec("SELECT expires FROM tickets WHERE id = ?", vec![ticket.clone().into()])?
                    .to_array::<ExpiryRow>()?;
                sql.exec("DELETE FROM tickets WHERE id = ?", vec![ticket.into()])?;
                let valid = rows.first().is_some_and(|r| r.expires >= now_ms());
                reply(200, &json!({"valid": valid}))
            }
        }
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> Result<()> {
        sockets::on_message(&ws, message);
        Ok(())
    }

    async fn websocket_close(&self, ws: WebSocket, _code: usize, _reason: String, _was_clean: bool) -> Result<()> {
        // Complete the closing handshake; the runtime then forgets the socket.
        let _ = ws.close(Some(1000), Some("closed"));
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> Result<()> {
        let _ = ws.close(Some(1011), Some("error"));
        Ok(())
    }

    async fn alarm(&self) -> Result<Response> {
        // No alarm is set yet (the analytics issue adds the tick); answer any
        // stray one instead of panicking in the default handler.
        Response::ok("no alarm work")
    }
}
