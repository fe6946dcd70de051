//! Hibernating WebSockets for any object: accept with a tag and a default
//! subscription in the attachment, answer client messages, fan out to the
//! sockets whose filter matches. Everything a socket needs lives in its
//! attachment, so it survives hibernation; `ping` is answered by the
//! runtime's auto-response without waking the object.
//!
//! workers-rs' `State` helpers for these calls unwrap (and would panic); the
//! raw `DurableObjectState` methods return errors instead, so they are used here.

use std::cell::RefCell;

use wasm_bindgen::prelude::{wasm_bindgen, JsValue};
use wasm_bindgen::JsCast;

use serde_json::json;
use worker::worker_sys::WebSocketRequestResponsePair;
use worker::{Response, Result, State, WebSocket, WebSocketIncomingMessage, WebSocketPair};

use crate::clock::now_ms;
use crate::intel::protocol::{
    count_message, parse_client, AlertNotice, ClientMessage, MessageType, ServerMessage, SocketState, Subscription,
    Update, CLOSE_POLICY, FLOOD_MAX_MESSAGES, FLOOD_WINDOW_MS, PING, PONG,
};
use crate::platform::reply;

/// ISO 8601 in UTC with milliseconds, as JavaScript writes it (the pure one).
pub use crate::intel::protocol::iso;

#[wasm_bindgen]
extern "C" {
    /// A WebSocket seen only for `send` given a JS value (web-sys only
    /// takes `&str`, which it copies into a new JS string on every call).
    type TextSocket;
    #[wasm_bindgen(method, catch, js_name = send)]
    fn send_value(this: &TextSocket, data: &JsValue) -> std::result::Result<(), JsValue>;
}

/// Sends a text already made a JS string; false if the socket refused it.
fn send_text(ws: &WebSocket, text: &JsValue) -> bool {
    let raw: &web_sys::WebSocket = ws.as_ref();
    raw.unchecked_ref::<TextSocket>().send_value(text).is_ok()
}

/// Registers the ping auto-response (call from the object's constructor).
pub fn enable_auto_pong(state: &State) {
    if let Ok(pair) = WebSocketRequestResponsePair::new(PING, PONG) {
        let _ = state.as_raw().set_websocket_auto_response(&pair);
    }
}

pub fn sockets(state: &State, tag: &str) -> Vec<WebSocket> {
    state.as_raw().get_websockets_with_tag(tag).map(|v| v.into_iter().map(Into::into).collect()).unwrap_or_default()
}

/// Accepts a WebSocket upgrade into this object under `tag`, or refuses it
/// with 503 when `max_clients` sockets are already open.
pub fn accept(
    state: &State,
    tag: &str,
    subscribers: &Subscribers,
    max_clients: usize,
    bearer: bool,
) -> worker::Result<Response> {
    match accept_pair(state, tag, subscribers, max_clients)? {
        Accepted::Refused(res) => Ok(res),
        Accepted::Open { client, .. } => upgrade(client, bearer),
    }
}

/// What `accept_pair` did.
pub enum Accepted {
    /// The object is full: this answer says so (503).
    Refused(Response),
    /// The server end is accepted (hibernating, in `subscribers`); the client
    /// end goes back in the 101 (`upgrade`).
    Open { client: WebSocket, server: WebSocket },
}

/// The refusal of a full stream object.
pub fn full(max_clients: usize) -> worker::Result<Response> {
    reply(
        503,
        &json!({"error": "too_many_stream_clients", "message": format!("this stream has its maximum of {max_clients} clients (MAX_STREAM_CLIENTS)")}),
    )
}

/// Accepts the server end of a new socket under `tag` unless `max_clients`
/// sockets are already open (counted and accepted with no await between:
/// concurrent upgrades never pass the limit).
pub fn accept_pair(
    state: &State,
    tag: &str,
    subscribers: &Subscribers,
    max_clients: usize,
) -> worker::Result<Accepted> {
    let open = state.as_raw().get_websockets().map(|v| v.len()).unwrap_or(0);
    if open >= max_clients {
        return Ok(Accepted::Refused(full(max_clients)?));
    }
    let pair = WebSocketPair::new()?;
    let tags = vec![wasm_bindgen::JsValue::from_str(tag)];
    state
        .as_raw()
        .accept_websocket_with_tags(pair.server.as_ref(), tags)
        .map_err(|e| worker::Error::RustError(format!("accept failed: {e:?}")))?;
    save_state(&pair.server, &SocketState::default())?;
    subscribers.added(&pair.server, Subscription::default());
    Ok(Accepted::Open { client: pair.client, server: pair.server })
}

/// The 101 answer that hands the client end of an accepted socket back.
pub fn upgrade(client: WebSocket, bearer: bool) -> worker::Result<Response> {
    let res = Response::from_websocket(client)?;
    if bearer {
        // Browsers drop a socket whose subprotocol was offered but not echoed.
        let mut res = res;
        res.headers_mut().set("Sec-WebSocket-Protocol", "bearer")?;
        return Ok(res);
    }
    Ok(res)
}

/// Sends every text to every socket of `tag` (insights and metrics are not
/// filtered by subscriptions: they are about the whole site). A socket that
/// cannot be sent to is closed. Returns the messages sent.
pub fn send_all(state: &State, tag: &str, texts: &[String]) -> usize {
    if texts.is_empty() {
        return 0;
    }
    let texts: Vec<JsValue> = texts.iter().map(|t| JsValue::from_str(t)).collect();
    let mut sent = 0;
    for ws in sockets(state, tag) {
        for t in &texts {
            if !send_text(&ws, t) {
                let _ = ws.close(Some(1011), Some("send failed"));
                break;
            }
            sent += 1;
        }
    }
    sent
}

/// Handles one client message: subscribe/unsubscribe update the attachment,
/// anything invalid gets an `error` message, a flood closes with 1008.
pub fn on_message(
    ws: &WebSocket,
    subscribers: &Subscribers,
    hash_key: Option<&str>,
    message: WebSocketIncomingMessage,
) {
    let now = now_ms();
    let mut st = load_state(ws);
    if count_message(&mut st, now) {
        let reason = format!("flooding: more than {FLOOD_MAX_MESSAGES} messages in {} s", FLOOD_WINDOW_MS / 1000.0);
        let _ = ws.close(Some(CLOSE_POLICY), Some(reason));
        return;
    }
    let reply = match message {
        WebSocketIncomingMessage::Binary(_) => Some(ServerMessage::error(
            "bad_message",
            "binary frames are not part of the protocol; send JSON text",
            &iso(now),
        )),
        WebSocketIncomingMessage::String(text) => match parse_client(&text) {
            Ok(ClientMessage::Subscribe(sub)) => {
                st.subscription = sub.keyed(hash_key);
                Some(ServerMessage::new(MessageType::Event, json!({"subscribed": st.subscription}), &iso(now)))
            }
            Ok(ClientMessage::Unsubscribe) => {
                st.subscription = Default::default();
                Some(ServerMessage::new(MessageType::Event, json!({"subscribed": st.subscription}), &iso(now)))
            }
            // A ping the auto-response did not catch (other spacing): answer it here.
            Ok(ClientMessage::Ping) => {
                let _ = ws.send_with_str(PONG);
                None
            }
            Err(e) => Some(ServerMessage::error("bad_message", &e, &iso(now))),
        },
    };
    // The attachment carries the flood counter: a socket whose state cannot
    // be saved would never be counted again, so it is closed instead.
    if save_state(ws, &st).is_err() {
        subscribers.removed(ws);
        let _ = ws.close(Some(1011), Some("could not save the socket's state"));
        return;
    }
    subscribers.changed(ws, &st.subscription);
    if let Some(m) = reply {
        let _ = ws.send_with_str(m.to_text());
    }
}

/// The sockets of one tag with their subscriptions, read from the
/// attachments once and then kept in the object's memory, changed one
/// socket at a time: an accept adds its entry, a subscribe changes one, a
/// close or a failed send removes one (rebuilding 1,000 entries on every
/// connection would cost more than the events sent to them). Memory only:
/// after hibernation the object starts empty and reads the attachments again.
#[derive(Default)]
pub struct Subscribers(RefCell<Option<Vec<(WebSocket, Subscription)>>>);

/// Whether two handles name the same socket (JavaScript identity).
fn same(a: &WebSocket, b: &WebSocket) -> bool {
    let (a, b): (&web_sys::WebSocket, &web_sys::WebSocket) = (a.as_ref(), b.as_ref());
    js_sys::Object::is(a, b)
}

impl Subscribers {
    /// A socket was accepted (nothing to do while the list is not read yet:
    /// reading it will find the socket's attachment).
    pub fn added(&self, ws: &WebSocket, sub: Subscription) {
        if let Some(list) = self.0.borrow_mut().as_mut() {
            list.push((ws.clone(), sub));
        }
    }

    /// A socket's subscription changed (a socket not in the list, e.g. of
    /// another tag, stays out).
    pub fn changed(&self, ws: &WebSocket, sub: &Subscription) {
        if let Some(list) = self.0.borrow_mut().as_mut() {
            if let Some(entry) = list.iter_mut().find(|(w, _)| same(w, ws)) {
                entry.1 = sub.clone();
            }
        }
    }

    /// A socket closed or failed.
    pub fn removed(&self, ws: &WebSocket) {
        if let Some(list) = self.0.borrow_mut().as_mut() {
            list.retain(|(w, _)| !same(w, ws));
        }
    }

    fn load(&self, state: &State, tag: &str) {
        if self.0.borrow().is_some() {
            return;
        }
        let list = sockets(state, tag)
            .into_iter()
            .map(|ws| {
                let sub = load_state(&ws).subscription;
                (ws, sub)
            })
            .collect();
        *self.0.borrow_mut() = Some(list);
    }
}

/// Sends each update and alert to the sockets of `tag` whose filter matches.
/// A socket that cannot be sent to is closed (the runtime then drops it).
/// Returns the number of messages delivered.
pub fn broadcast(
    state: &State,
    tag: &str,
    subscribers: &Subscribers,
    updates: &[Update],
    alerts: &[AlertNotice],
) -> usize {
    if updates.is_empty() && alerts.is_empty() {
        return 0;
    }
    let ts = iso(now_ms());
    let update_texts: Vec<String> =
        updates.iter().map(|u| ServerMessage::new(MessageType::IntelligenceUpdate, json!(u), &ts).to_text()).collect();
    let alert_texts: Vec<String> =
        alerts.iter().map(|a| ServerMessage::new(MessageType::Alert, json!(a), &ts).to_text()).collect();
    // Made JS strings once, not once per socket (a 10,000-socket delivery
    // would copy each text 10,000 times across the wasm boundary).
    let update_texts: Vec<JsValue> = update_texts.iter().map(|t| JsValue::from_str(t)).collect();
    let alert_texts: Vec<JsValue> = alert_texts.iter().map(|t| JsValue::from_str(t)).collect();
    subscribers.load(state, tag);
    let mut delivered = 0;
    let mut dead = Vec::new();
    if let Some(list) = subscribers.0.borrow().as_ref() {
        for (ws, sub) in list {
            let mut alive = true;
            for (u, text) in updates.iter().zip(&update_texts) {
                if alive && sub.matches_update(u) {
                    alive = send_text(ws, text);
                    delivered += usize::from(alive);
                }
            }
            for (a, text) in alerts.iter().zip(&alert_texts) {
                if alive && sub.matches_alert(a) {
                    alive = send_text(ws, text);
                    delivered += usize::from(alive);
                }
            }
            if !alive {
                let _ = ws.close(Some(1011), Some("send failed"));
                dead.push(ws.clone());
            }
        }
    }
    for ws in &dead {
        subscribers.removed(ws);
    }
    delivered
}

/// A client closed: complete the closing handshake; the runtime then forgets the socket.
/// A socket's message, in an object that reads the configuration for it:
/// the `ip` filter is kept as the subject's storage key (`IP_HASH_KEY`), and
/// with an invalid configuration the socket is closed (1011).
pub fn on_message_configured(
    env: &worker::Env,
    ws: &WebSocket,
    subscribers: &Subscribers,
    message: WebSocketIncomingMessage,
) {
    match crate::platform::config(env) {
        Ok(config) => on_message(ws, subscribers, config.secrets.ip_hash_key.as_deref(), message),
        Err(_) => {
            let _ = ws.close(Some(1011), Some("configuration invalid"));
        }
    }
}

pub fn on_close(ws: &WebSocket, subscribers: &Subscribers) {
    subscribers.removed(ws);
    let _ = ws.close(Some(1000), Some("closed"));
}

/// A socket errored: close it so it is pruned.
pub fn on_error(ws: &WebSocket, subscribers: &Subscribers) {
    subscribers.removed(ws);
    let _ = ws.close(Some(1011), Some("error"));
}

/// A socket's state is kept in its attachment as JSON text: a plain string
/// crosses into the runtime as one value, where a struct would go through
/// serde-wasm-bindgen (a JS call per field and a second deserializer per type
/// in the wasm). A structured attachment from an earlier version is read too
/// (platform::StoredValue); a missing or unreadable one is the default state.
fn load_state(ws: &WebSocket) -> SocketState {
    ws.deserialize_attachment::<crate::platform::StoredValue>()
        .ok()
        .flatten()
        .and_then(|v| v.parse())
        .unwrap_or_default()
}

fn save_state(ws: &WebSocket, st: &SocketState) -> Result<()> {
    ws.serialize_attachment(crate::platform::to_json(st)?)
}
