//! sensor-aggregate: input is a site name (`site-1`). Reads `temp` from every device reading
//! object `sensors/<site>.<device>` (documents `{"temp": <number>, "at": <ms>}`), skipping
//! objects without a numeric temp, and writes `{"count":N,"mean":M,"min":A,"max":B}` to path
//! `temp` of object `aggregates/<site>` (and the node time to path `at`). Outputs that JSON.
//! With no readings, mean/min/max are null.

use liquid_guest::{log, now_ms, obj, Level};

fn handler(input: Vec<u8>) -> Result<Vec<u8>, String> {
    let site =
        std::str::from_utf8(&input).map_err(|_| "the input (a site name) is not UTF-8".to_string())?.trim().to_string();
    if site.is_empty() || !site.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-:".contains(&b)) {
        return Err(format!("bad site name {:?}: expected key characters A-Z a-z 0-9 . _ - :", site));
    }
    let prefix = format!("sensors/{}.", site);
    let listing = obj::list(&prefix).map_err(|e| format!("list {}: {}", prefix, e))?;
    let names = object_names(&listing).ok_or_else(|| format!("unexpected listing {}", listing))?;

    let (mut count, mut sum, mut min, mut max) = (0u64, 0f64, f64::INFINITY, f64::NEG_INFINITY);
    for name in names {
        if !name.starts_with(&prefix) {
            continue; // not a device of this site (and never the aggregate itself)
        }
        let text = match obj::get(&name, "temp") {
            Ok(t) => t,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(format!("get {} temp: {}", name, e)),
        };
        let temp = match text.trim().parse::<f64>() {
            Ok(t) if t.is_finite() => t,
            _ => {
                log(Level::Debug, &format!("{}: temp is not a number: {}", name, text));
                continue;
            }
        };
        count += 1;
        sum += temp;
        min = min.min(temp);
        max = max.max(temp);
    }

    let json = if count == 0 {
        "{\"count\":0,\"mean\":null,\"min\":null,\"max\":null}".to_string()
    } else {
        format!("{{\"count\":{},\"mean\":{},\"min\":{},\"max\":{}}}", count, sum / count as f64, min, max)
    };
    let target = format!("aggregates/{}", site);
    obj::set(&target, "temp", &json).map_err(|e| format!("set {} temp: {}", target, e))?;
    obj::set(&target, "at", &now_ms().to_string()).map_err(|e| format!("set {} at: {}", target, e))?;
    log(Level::Info, &format!("{}: {} readings", target, count));
    Ok(json.into_bytes())
}

liquid_guest::entry!(handler);

/// The names in an `obj_list` answer: a JSON array of strings (or of objects with an
/// `"object"` name, as `GET /v1/objects` lists them).
fn object_names(json: &str) -> Option<Vec<String>> {
    let mut p = Parser { s: json.as_bytes(), i: 0 };
    let v = p.value()?;
    p.ws();
    if p.i != p.s.len() {
        return None;
    }
    let items = match v {
        Json::Arr(items) => items,
        _ => return None,
    };
    let mut names = Vec::new();
    for item in items {
        match item {
            Json::Str(s) => names.push(s),
            Json::Obj(fields) => {
                for (k, v) in fields {
                    if let ("object", Json::Str(s)) = (k.as_str(), v) {
                        names.push(s);
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    Some(names)
}

/// Just enough JSON for a listing.
enum Json {
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
    Other,
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn ws(&mut self) {
        while self.i < self.s.len() && b" \t\r\n".contains(&self.s[self.i]) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Option<Json> {
        self.ws();
        match *self.s.get(self.i)? {
            b'"' => self.string().map(Json::Str),
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                if self.eat(b']') {
                    return Some(Json::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    if self.eat(b']') {
                        return Some(Json::Arr(items));
                    }
                    if !self.eat(b',') {
                        return None;
                    }
                }
            }
            b'{' => {
                self.i += 1;
                let mut fields = Vec::new();
                if self.eat(b'}') {
                    return Some(Json::Obj(fields));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    if !self.eat(b':') {
                        return None;
                    }
                    fields.push((k, self.value()?));
                    if self.eat(b'}') {
                        return Some(Json::Obj(fields));
                    }
                    if !self.eat(b',') {
                        return None;
                    }
                }
            }
            _ => {
                // number, true, false, null: skip to the next delimiter
                let start = self.i;
                while self.i < self.s.len() && !b",]} \t\r\n".contains(&self.s[self.i]) {
                    self.i += 1;
                }
                if self.i == start {
                    None
                } else {
                    Some(Json::Other)
                }
            }
        }
    }

    fn string(&mut self) -> Option<String> {
        if self.s.get(self.i) != Some(&b'"') {
            return None;
        }
        self.i += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let c = *self.s.get(self.i)?;
            self.i += 1;
            match c {
                b'"' => return String::from_utf8(out).ok(),
                b'\\' => {
                    let e = *self.s.get(self.i)?;
                    self.i += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let hex = std::str::from_utf8(self.s.get(self.i..self.i + 4)?).ok()?;
                            self.i += 4;
                            let cp = u32::from_str_radix(hex, 16).ok()?;
                            // Object names are ASCII; a lone surrogate becomes U+FFFD.
                            let ch = char::from_u32(cp).unwrap_or('\u{fffd}');
                            let mut b = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut b).as_bytes());
                        }
                        _ => return None,
                    }
                }
                _ => out.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::object_names;

    #[test]
    fn listings() {
        assert_eq!(
            object_names(r#"["sensors/site-1.a", "sensors/site-1.b"]"#),
            Some(vec!["sensors/site-1.a".to_string(), "sensors/site-1.b".to_string()])
        );
        assert_eq!(
            object_names(r#"[{"object": "sensors/x.a", "heads": ["3f"], "n": 1.5e3}]"#),
            Some(vec!["sensors/x.a".to_string()])
        );
        assert_eq!(object_names("[]"), Some(vec![]));
        assert_eq!(object_names("[\"a\\u0041\"]"), Some(vec!["aA".to_string()]));
        assert_eq!(object_names("{}"), None);
        assert_eq!(object_names("[\"a\""), None);
    }
}
