//! counter: increments `count` of object `demo/counter` by 1, or by the integer given as
//! input, and outputs the new value as `{"count":N}`.

fn handler(input: Vec<u8>) -> Result<Vec<u8>, String> {
    let by = std::str::from_utf8(&input).ok().and_then(|s| s.trim().parse::<i64>().ok()).unwrap_or(1);
    liquid_guest::obj::inc("demo/counter", "count", by).map_err(|e| format!("inc: {}", e))?;
    let n = liquid_guest::obj::get("demo/counter", "count").map_err(|e| format!("get: {}", e))?;
    Ok(format!("{{\"count\":{}}}", n.trim()).into_bytes())
}

liquid_guest::entry!(handler);
