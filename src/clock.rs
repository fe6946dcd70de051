//! The one place that reads the clock. Everything else takes `now` as an
//! argument (`std::time::SystemTime::now()` panics on wasm32, and passing time
//! in makes every time rule testable at exact instants).

/// Milliseconds since the Unix epoch, from the runtime's `Date.now()`.
/// (In Workers it only advances across I/O, which is what we want to measure.)
#[cfg(target_arch = "wasm32")]
pub fn now_ms() -> f64 {
    js_sys::Date::now()
}
