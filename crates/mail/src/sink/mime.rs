//! Just enough RFC 2045-2047 to read back what lettre sends: headers, multipart
//! bodies, quoted-printable and base64 transfer encodings, encoded words.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

pub(super) fn subject(raw: &str) -> Option<String> {
    let (headers, _) = split(raw);
    header(&headers, "Subject").map(|value| decode_words(value.trim()))
}

pub(super) fn body_text(raw: &str) -> String {
    let (headers, body) = split(raw);
    text_part(&headers, body)
        .unwrap_or_default()
        .replace("\r\n", "\n")
}

type Headers = Vec<(String, String)>;

/// Headers (unfolded) and body of a message or of one MIME part.
fn split(raw: &str) -> (Headers, &str) {
    let (head, body) = match (raw.find("\r\n\r\n"), raw.find("\n\n")) {
        (Some(crlf), Some(lf)) if lf < crlf => (&raw[..lf], &raw[lf + 2..]),
        (Some(crlf), _) => (&raw[..crlf], &raw[crlf + 4..]),
        (None, Some(lf)) => (&raw[..lf], &raw[lf + 2..]),
        (None, None) => (raw, ""),
    };
    let mut headers: Headers = Vec::new();
    for line in head.lines() {
        match headers.last_mut() {
            // A folded line continues the previous header (RFC 5322 §2.2.3).
            Some((_, value)) if line.starts_with([' ', '\t']) => value.push_str(line),
            _ => {
                if let Some((name, value)) = line.split_once(':') {
                    headers.push((name.trim().to_owned(), value.trim_start().to_owned()));
                }
            }
        }
    }
    (headers, body)
}

fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// `boundary` of `multipart/alternative; boundary="abc"`.
fn parameter(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().trim_matches('"').to_owned())
    })
}

fn text_part(headers: &Headers, body: &str) -> Option<String> {
    // Without a Content-Type, a part is text/plain (RFC 2045 §5.2).
    let content_type = header(headers, "Content-Type").unwrap_or("text/plain");
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if media_type.starts_with("multipart/") {
        let boundary = parameter(content_type, "boundary")?;
        return parts(body, &boundary).into_iter().find_map(|part| {
            let (headers, body) = split(&part);
            text_part(&headers, body)
        });
    }
    (media_type == "text/plain")
        .then(|| decode_transfer(header(headers, "Content-Transfer-Encoding"), body))
}

/// The parts between `--boundary` lines, up to `--boundary--`.
fn parts(body: &str, boundary: &str) -> Vec<String> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in body.lines() {
        let line_trimmed = line.trim_end();
        if line_trimmed == delimiter || line_trimmed == format!("{delimiter}--") {
            parts.extend(current.take().map(|lines| lines.join("\r\n")));
            if line_trimmed != delimiter {
                break;
            }
            current = Some(Vec::new());
        } else if let Some(lines) = current.as_mut() {
            lines.push(line);
        }
    }
    parts
}

fn decode_transfer(encoding: Option<&str>, body: &str) -> String {
    let encoding = encoding.unwrap_or("7bit").trim().to_ascii_lowercase();
    let decoded = match encoding.as_str() {
        "base64" => {
            let compact: String = body.split_ascii_whitespace().collect();
            STANDARD.decode(compact).ok()
        }
        // Robust mode: soft line breaks (`=` at the end of a line) join lines, and a
        // malformed escape is kept as it is rather than failing the whole body.
        "quoted-printable" => {
            quoted_printable::decode(body, quoted_printable::ParseMode::Robust).ok()
        }
        _ => None,
    };
    match decoded {
        Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        None => body.to_owned(),
    }
}

/// Decodes RFC 2047 encoded words (`=?utf-8?b?...?=`, `=?utf-8?q?...?=`). The bytes
/// of adjacent words are joined before UTF-8 decoding, since an encoder may split a
/// character between them; the whitespace between such words is dropped.
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find("=?") {
        let (before, candidate) = rest.split_at(start);
        match encoded_word(candidate) {
            Some((bytes, len)) => {
                if pending.is_empty() || !before.trim().is_empty() {
                    out.push_str(&String::from_utf8_lossy(&std::mem::take(&mut pending)));
                    out.push_str(before);
                }
                pending.extend(bytes);
                rest = &candidate[len..];
            }
            None => {
                out.push_str(&String::from_utf8_lossy(&std::mem::take(&mut pending)));
                out.push_str(before);
                out.push_str("=?");
                rest = &candidate[2..];
            }
        }
    }
    out.push_str(&String::from_utf8_lossy(&pending));
    out.push_str(rest);
    out
}

/// `=?charset?encoding?text?=` at the start of `s`: its bytes and its length.
/// The charset is taken to be UTF-8, which is what lettre writes.
fn encoded_word(s: &str) -> Option<(Vec<u8>, usize)> {
    let inner = s.strip_prefix("=?")?;
    let (_charset, inner) = inner.split_once('?')?;
    let (encoding, inner) = inner.split_once('?')?;
    let (text, _) = inner.split_once("?=")?;
    if text.contains(char::is_whitespace) {
        return None;
    }
    let bytes = match encoding {
        "B" | "b" => STANDARD.decode(text).ok()?,
        // In the Q encoding `_` is a space; a literal underscore is written `=5F`.
        "Q" | "q" => {
            quoted_printable::decode(text.replace('_', " "), quoted_printable::ParseMode::Robust)
                .ok()?
        }
        _ => return None,
    };
    let len = s.len() - inner.len() + text.len() + 2;
    Some((bytes, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_words() {
        assert_eq!(decode_words("plain subject"), "plain subject");
        assert_eq!(decode_words("=?utf-8?b?Q29kZTogw6k=?="), "Code: é");
        assert_eq!(
            decode_words("=?UTF-8?Q?caf=C3=A9_au_lait?="),
            "café au lait"
        );
        // A character split over two adjacent words, whitespace between them dropped.
        assert_eq!(decode_words("=?utf-8?q?=C3?= =?utf-8?q?=BC_ok?="), "ü ok");
        assert_eq!(decode_words("a =?utf-8?b?w6k=?= b"), "a é b");
        assert_eq!(decode_words("=?broken"), "=?broken");
    }

    #[test]
    fn multipart_text_part() {
        let raw = "Subject: x\r\nContent-Type: multipart/alternative;\r\n boundary=\"b1\"\r\n\r\n\
                   preamble\r\n--b1\r\nContent-Type: text/html\r\n\r\n<p>no</p>\r\n\
                   --b1\r\nContent-Type: text/plain; charset=utf-8\r\n\
                   Content-Transfer-Encoding: quoted-printable\r\n\r\n\
                   caf=C3=A9 and a soft=\r\n break\r\n--b1--\r\nepilogue\r\n";
        assert_eq!(body_text(raw), "café and a soft break");
        assert_eq!(subject(raw).as_deref(), Some("x"));
    }

    #[test]
    fn base64_body() {
        let raw = "Content-Transfer-Encoding: base64\r\n\r\nw6kgw7wK\r\nMTIzNDU2\r\n";
        assert_eq!(body_text(raw), "é ü\n123456");
    }
}
