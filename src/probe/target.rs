//! The probe's target: a URL read against the schemes and ports of `capabilities.toml`.

use crate::capabilities::Capabilities;

/// A probe target parsed from a URL: `scheme://host[:port][/path]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub scheme: String,
    pub protocol: String,
    pub secure: bool,
    /// The port's security in `capabilities.toml`: `none`, `tls` or `dtls`.
    pub security: String,
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Target {
    /// Parse a probe URL; the scheme picks the protocol and the default port comes from the
    /// capabilities (the EnOS port of that scheme).
    pub fn parse(caps: &Capabilities, url: &str) -> Result<Self, String> {
        let schemes: Vec<String> = caps
            .protocols
            .iter()
            .flat_map(|p| p.ports.iter().map(|x| x.scheme.clone()))
            .collect();
        let help = || {
            format!(
                "use one of {}, for example mqtt://127.0.0.1:11883",
                schemes.join("://, ") + "://"
            )
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("`{url}` has no scheme; {}", help()))?;
        let scheme = scheme.to_ascii_lowercase();
        let (proto, port) = caps
            .protocols
            .iter()
            .find_map(|p| p.ports.iter().find(|x| x.scheme == scheme).map(|x| (p, x)))
            .ok_or_else(|| format!("unknown scheme `{scheme}://`; {}", help()))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err("credentials in the URL are not accepted: process lists and logs keep URLs; use --username with ENOS_CONNECT_PASSWORD, or --product-key/--device-key".into());
        }
        let (host, port_text) = if let Some(stripped) = authority.strip_prefix('[') {
            let end = stripped
                .find(']')
                .ok_or_else(|| format!("`{url}`: unclosed `[` in an IPv6 address"))?;
            let after = &stripped[end + 1..];
            (&stripped[..end], after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(format!("`{url}` has no host"));
        }
        let port = match port_text {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| format!("`{p}` is not a port number (1-65535)"))?,
            None => port.port,
        };
        if port == 0 {
            return Err("port 0 cannot be probed".into());
        }
        Ok(Target {
            scheme: scheme.clone(),
            protocol: proto.id.clone(),
            secure: port_security(caps, &scheme) != "none",
            security: port_security(caps, &scheme),
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }

    /// The same host and port under the protocol's secure scheme (`mqtts://` for `mqtt://`,
    /// `coaps://` for `coap://`), for a plain URL whose port seems to speak TLS or DTLS.
    pub fn secure_url(&self, caps: &Capabilities) -> Option<String> {
        if self.secure {
            return None;
        }
        let scheme = caps
            .protocols
            .iter()
            .find(|p| p.id == self.protocol)?
            .ports
            .iter()
            .find(|x| x.security != "none")?
            .scheme
            .clone();
        Some(
            Target {
                scheme,
                ..self.clone()
            }
            .url(),
        )
    }

    pub fn url(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{}://{host}:{}{}", self.scheme, self.port, self.path)
    }
}

fn port_security(caps: &Capabilities, scheme: &str) -> String {
    caps.protocols
        .iter()
        .flat_map(|p| p.ports.iter())
        .find(|x| x.scheme == scheme)
        .map_or("none".into(), |x| x.security.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_take_the_enos_port_of_their_scheme() {
        let caps = crate::capabilities::embedded().expect("caps");
        let port = |url: &str| Target::parse(&caps, url).map(|t| t.port);
        assert_eq!(port("mqtt://h"), Ok(11883));
        assert_eq!(port("mqtts://h"), Ok(18883));
        assert_eq!(port("coap://h"), Ok(5683));
        assert_eq!(port("coaps://h"), Ok(5684));
        assert_eq!(port("http://h"), Ok(8080));
        assert_eq!(port("https://h"), Ok(443));
        assert_eq!(port("MQTT://h:1883"), Ok(1883));
        let v6 = Target::parse(&caps, "coap://[::1]:5690/a/b").expect("v6");
        assert_eq!(
            (v6.host.as_str(), v6.port, v6.path.as_str()),
            ("::1", 5690, "/a/b")
        );
        assert_eq!(v6.url(), "coap://[::1]:5690/a/b");
        assert!(Target::parse(&caps, "mqtt://u:p@h").is_err());
        assert!(Target::parse(&caps, "mqtt://[::1").is_err());
    }
}
