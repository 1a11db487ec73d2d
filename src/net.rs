//! The outbound address guard: every HTTP request to a URL that someone other than the operator
//! chose (webhook receivers today) goes through an `OutboundClient`, which refuses destinations
//! inside the operator's network — loopback, private (RFC 1918, ULA), link-local, carrier-grade
//! NAT, unspecified, multicast, broadcast and other special-purpose ranges, the IPv6 forms that
//! embed such an IPv4 address, and cloud metadata addresses — unless the operator's allow-list
//! (`outbound_allow`) names them.
//!
//! Why it is built this way: a host name is only a promise, and what it resolves to may change
//! between a check and the connection (DNS rebinding). So names are resolved by the client's own
//! resolver (`GuardedResolver`), which hands the connector only addresses that passed; there is
//! no second lookup to race. Literal IP hosts never reach a resolver, so they are checked before
//! a request leaves (`OutboundClient::request`) and on every redirect hop (the redirect policy).
//! Proxies from the environment are off: a proxy would resolve the name itself, out of sight.
//! A check at registration time (`OutboundPolicy::check_url_resolving`) only gives an early,
//! clear error; the check that counts is the one at connection time.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use url::{Host, Url};

pub use ipnet::IpNet;

/// Why an address is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocked {
    Unspecified,
    Loopback,
    /// RFC 1918, IPv6 unique-local (fc00::/7) and site-local.
    Private,
    LinkLocal,
    /// 100.64.0.0/10, shared by carrier-grade NAT (and cloud-internal services).
    SharedAddressSpace,
    Multicast,
    Broadcast,
    /// Special-purpose ranges that are no public host: benchmarking, documentation, IETF
    /// protocol assignments, deprecated IPv4-compatible and Teredo forms, future use.
    Reserved,
    /// 169.254.169.254 and fd00:ec2::254, where clouds serve instance credentials.
    Metadata,
}

impl Blocked {
    pub fn describe(self) -> &'static str {
        match self {
            Blocked::Unspecified => "an unspecified address",
            Blocked::Loopback => "a loopback address",
            Blocked::Private => "a private-network address",
            Blocked::LinkLocal => "a link-local address",
            Blocked::SharedAddressSpace => "a carrier-grade NAT address",
            Blocked::Multicast => "a multicast address",
            Blocked::Broadcast => "the broadcast address",
            Blocked::Reserved => "a reserved address",
            Blocked::Metadata => "a cloud metadata address",
        }
    }
}

const METADATA_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

/// The class of a refused address; `None` for a public unicast address.
pub fn classify(ip: IpAddr) -> Option<Blocked> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Blocked> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip == METADATA_V4 => Blocked::Metadata,
        _ if ip.is_broadcast() => Blocked::Broadcast,
        (0, _, _) => Blocked::Unspecified,
        (127, _, _) => Blocked::Loopback,
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => Blocked::Private,
        (100, 64..=127, _) => Blocked::SharedAddressSpace,
        (169, 254, _) => Blocked::LinkLocal,
        (224..=239, _, _) => Blocked::Multicast,
        (240..=255, _, _)
        | (192, 0, 0)
        | (192, 0, 2)
        | (192, 88, 99)
        | (198, 18..=19, _)
        | (198, 51, 100)
        | (203, 0, 113) => Blocked::Reserved,
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<Blocked> {
    let embedded = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    if ip == METADATA_V6 {
        return Some(Blocked::Metadata);
    }
    if ip.is_unspecified() {
        return Some(Blocked::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Blocked::Loopback);
    }
    Some(match ip.segments() {
        // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) reach the IPv4 address they embed
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => return classify_v4(embedded(hi, lo)),
        [0x2002, hi, lo, ..] => return classify_v4(embedded(hi, lo)),
        // IPv4-compatible (deprecated), local-use NAT64, discard-only, Teredo, documentation
        [0, 0, 0, 0, 0, 0, _, _]
        | [0x64, 0xff9b, 1, ..]
        | [0x100, 0, 0, 0, ..]
        | [0x2001, 0, ..]
        | [0x2001, 0xdb8, ..] => Blocked::Reserved,
        [0xfc00..=0xfdff, ..] | [0xfec0..=0xfeff, ..] => Blocked::Private,
        [0xfe80..=0xfebf, ..] => Blocked::LinkLocal,
        [0xff00..=0xffff, ..] => Blocked::Multicast,
        _ => return None,
    })
}

/// An allow-list entry: a CIDR (`10.0.0.0/8`, `fd00::/8`) or a single address (`127.0.0.1`).
pub fn parse_net(raw: &str) -> Result<IpNet, String> {
    let text = raw.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{text}` is not a CIDR such as 10.0.0.0/8 or 127.0.0.1/32"))
}

/// A destination the guard refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct Refused {
    /// The host as the URL names it.
    pub host: String,
    /// The refused address (the host itself, or what it resolved to).
    pub address: IpAddr,
    pub class: Blocked,
}

impl Refused {
    fn describe(&self) -> String {
        let what = if self.host == self.address.to_string() {
            format!("{} is {}", self.host, self.class.describe())
        } else {
            format!(
                "{} resolves to {}, {}",
                self.host,
                self.address,
                self.class.describe()
            )
        };
        format!(
            "{what}; outbound requests there are refused (an operator can allow it with `outbound_allow`)"
        )
    }
}

/// Which destinations outbound requests may reach: every public address, and the refused
/// classes only where the allow-list names them. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct OutboundPolicy {
    allow: Arc<[IpNet]>,
}

/// How long a registration-time check waits for DNS before leaving the decision to delivery.
pub const CHECK_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

impl OutboundPolicy {
    pub fn new(allow: impl IntoIterator<Item = IpNet>) -> Self {
        Self {
            allow: allow.into_iter().collect(),
        }
    }

    /// The allow-list.
    pub fn allowed_nets(&self) -> &[IpNet] {
        &self.allow
    }

    /// Whether `ip` may be connected to; the class that refuses it otherwise.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Blocked> {
        let canonical = ip.to_canonical();
        match classify(canonical) {
            None => Ok(()),
            Some(_)
                if self
                    .allow
                    .iter()
                    .any(|net| net.contains(&canonical) || net.contains(&ip)) =>
            {
                Ok(())
            }
            Some(class) => Err(class),
        }
    }

    fn refuse(&self, host: &str, ip: IpAddr) -> Result<(), Refused> {
        self.check_ip(ip).map_err(|class| Refused {
            host: host.to_owned(),
            address: ip,
            class,
        })
    }

    /// Checks a URL's host without DNS: a literal address must pass; names pass here (their
    /// addresses are checked when they are resolved).
    pub fn check_url(&self, url: &Url) -> Result<(), Refused> {
        match url.host() {
            Some(Host::Ipv4(v4)) => self.refuse(&v4.to_string(), IpAddr::V4(v4)),
            Some(Host::Ipv6(v6)) => self.refuse(&v6.to_string(), IpAddr::V6(v6)),
            Some(Host::Domain(_)) | None => Ok(()),
        }
    }

    /// `check_url`, and for a name, a lookup (at most `CHECK_LOOKUP_TIMEOUT`): refused when the
    /// name resolves only to refused addresses. A name that does not resolve now passes; the
    /// connection-time check decides then.
    pub async fn check_url_resolving(&self, url: &Url) -> Result<(), Refused> {
        self.check_url(url)?;
        let Some(Host::Domain(name)) = url.host() else {
            return Ok(());
        };
        let port = url.port_or_known_default().unwrap_or(80);
        let lookup = tokio::time::timeout(CHECK_LOOKUP_TIMEOUT, tokio::net::lookup_host((name, port))).await;
        match lookup {
            Ok(Ok(found)) => self.filter(name, found.collect()).map(|_| ()),
            _ => Ok(()),
        }
    }

    /// The addresses of `name` that pass; an error when there were some and none passed.
    fn filter(&self, name: &str, found: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, Refused> {
        let mut first_refusal = None;
        let mut allowed = Vec::with_capacity(found.len());
        for addr in found {
            match self.refuse(name, addr.ip()) {
                Ok(()) => allowed.push(addr),
                Err(refused) => {
                    first_refusal.get_or_insert(refused);
                }
            }
        }
        match first_refusal {
            Some(refused) if allowed.is_empty() => Err(refused),
            _ => Ok(allowed),
        }
    }

    /// A client on `builder` whose every connection passes this policy: names resolved by the
    /// guarded resolver, no proxies, redirects as `redirects` says and checked hop by hop.
    pub fn client(
        &self,
        builder: reqwest::ClientBuilder,
        redirects: Redirects,
    ) -> Result<OutboundClient, reqwest::Error> {
        let policy = self.clone();
        let redirect = match redirects {
            Redirects::None => reqwest::redirect::Policy::none(),
            Redirects::KeepingMethod(max) => reqwest::redirect::Policy::custom(move |attempt| {
                let status = attempt.status().as_u16();
                if status != 307 && status != 308 {
                    // the receiver's answer stands: another method would drop the body
                    return attempt.stop();
                }
                if attempt.previous().len() > max {
                    return attempt.error(TooManyRedirects(max));
                }
                match policy.check_url(attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(refused) => attempt.error(refused),
                }
            }),
        };
        let http = builder
            .no_proxy()
            .dns_resolver(GuardedResolver { policy: self.clone() })
            .redirect(redirect)
            .build()?;
        Ok(OutboundClient {
            http,
            policy: self.clone(),
        })
    }
}

/// Which redirects a guarded client follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Redirects {
    /// None: a 3xx is the answer.
    None,
    /// 307 and 308 (which keep the method and body), at most this many in a row, each hop
    /// checked; other 3xx answers are the answer.
    KeepingMethod(usize),
}

#[derive(Debug, thiserror::Error)]
#[error("more than {0} redirects")]
struct TooManyRedirects(usize);

/// Resolves with the system resolver and hands on only the addresses the policy allows.
struct GuardedResolver {
    policy: OutboundPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed = policy.filter(&host, found)?;
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// An HTTP client that only reaches what its `OutboundPolicy` allows.
#[derive(Clone, Debug)]
pub struct OutboundClient {
    http: reqwest::Client,
    policy: OutboundPolicy,
}

/// Why an outbound request was not sent.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("not a valid URL: {0}")]
    Url(String),
    #[error(transparent)]
    Refused(#[from] Refused),
}

impl OutboundClient {
    /// A request to `url`; refused before anything is sent when the URL names a refused address.
    pub fn request(
        &self,
        method: reqwest::Method,
        url: &str,
    ) -> Result<reqwest::RequestBuilder, OutboundError> {
        let parsed = Url::parse(url).map_err(|e| OutboundError::Url(e.to_string()))?;
        self.policy.check_url(&parsed)?;
        Ok(self.http.request(method, parsed))
    }

    pub fn post(&self, url: &str) -> Result<reqwest::RequestBuilder, OutboundError> {
        self.request(reqwest::Method::POST, url)
    }

    pub fn policy(&self) -> &OutboundPolicy {
        &self.policy
    }
}

/// The guard's refusal behind a failed request (from the resolver or the redirect policy), if
/// that is why it failed.
pub fn refusal<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e Refused> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return Some(refused);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn refused_ranges_are_classified() {
        let cases = [
            ("0.0.0.0", Blocked::Unspecified),
            ("0.1.2.3", Blocked::Unspecified),
            ("127.0.0.1", Blocked::Loopback),
            ("127.255.0.2", Blocked::Loopback),
            ("10.0.0.1", Blocked::Private),
            ("172.16.0.1", Blocked::Private),
            ("172.31.255.254", Blocked::Private),
            ("192.168.1.1", Blocked::Private),
            ("100.64.0.1", Blocked::SharedAddressSpace),
            ("100.127.255.254", Blocked::SharedAddressSpace),
            ("169.254.0.1", Blocked::LinkLocal),
            ("169.254.169.254", Blocked::Metadata),
            ("224.0.0.1", Blocked::Multicast),
            ("239.255.255.250", Blocked::Multicast),
            ("255.255.255.255", Blocked::Broadcast),
            ("240.0.0.1", Blocked::Reserved),
            ("198.18.0.1", Blocked::Reserved),
            ("192.0.2.1", Blocked::Reserved),
            ("::", Blocked::Unspecified),
            ("::1", Blocked::Loopback),
            ("fc00::1", Blocked::Private),
            ("fd12:3456::1", Blocked::Private),
            ("fe80::1", Blocked::LinkLocal),
            ("febf::1", Blocked::LinkLocal),
            ("fec0::1", Blocked::Private),
            ("ff02::1", Blocked::Multicast),
            ("fd00:ec2::254", Blocked::Metadata),
            ("2001:db8::1", Blocked::Reserved),
            ("::10.0.0.1", Blocked::Reserved),
            // IPv4-mapped, NAT64 and 6to4 forms take the class of the IPv4 address inside
            ("::ffff:127.0.0.1", Blocked::Loopback),
            ("::ffff:10.1.2.3", Blocked::Private),
            ("::ffff:169.254.169.254", Blocked::Metadata),
            ("64:ff9b::a9fe:a9fe", Blocked::Metadata),
            ("64:ff9b::7f00:1", Blocked::Loopback),
            ("2002:c0a8:0101::1", Blocked::Private),
        ];
        for (text, class) in cases {
            assert_eq!(classify(ip(text)), Some(class), "{text}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for text in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.0.1",
            "192.169.0.1",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001:82a::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
        ] {
            assert_eq!(classify(ip(text)), None, "{text}");
            OutboundPolicy::default().check_ip(ip(text)).unwrap();
        }
    }

    #[test]
    fn the_allow_list_opens_exactly_what_it_names() {
        let policy = OutboundPolicy::new([
            parse_net("127.0.0.1/32").unwrap(),
            parse_net("10.0.0.0/8").unwrap(),
        ]);
        policy.check_ip(ip("127.0.0.1")).unwrap();
        // the mapped form of an allowed address is the same address
        policy.check_ip(ip("::ffff:127.0.0.1")).unwrap();
        policy.check_ip(ip("10.200.0.1")).unwrap();
        assert_eq!(policy.check_ip(ip("127.0.0.2")), Err(Blocked::Loopback));
        assert_eq!(policy.check_ip(ip("::1")), Err(Blocked::Loopback));
        assert_eq!(policy.check_ip(ip("169.254.169.254")), Err(Blocked::Metadata));
        assert_eq!(
            OutboundPolicy::default().check_ip(ip("127.0.0.1")),
            Err(Blocked::Loopback)
        );
    }

    #[test]
    fn allow_list_entries_are_cidrs_or_addresses() {
        assert_eq!(parse_net(" 127.0.0.1/32 ").unwrap().to_string(), "127.0.0.1/32");
        assert_eq!(parse_net("127.0.0.1").unwrap().to_string(), "127.0.0.1/32");
        assert_eq!(parse_net("::1").unwrap().to_string(), "::1/128");
        assert_eq!(parse_net("fd00::/8").unwrap().to_string(), "fd00::/8");
        let err = parse_net("localhost").unwrap_err();
        assert!(err.contains("`localhost` is not a CIDR"), "{err}");
        assert!(parse_net("10.0.0.0/33").is_err());
    }

    #[test]
    fn literal_hosts_are_checked_in_every_spelling() {
        let policy = OutboundPolicy::default();
        for url in [
            "http://127.0.0.1:8080/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00:ec2::254]/",
            "http://10.0.0.1/",
            "https://0.0.0.0/",
        ] {
            let refused = policy.check_url(&Url::parse(url).unwrap()).unwrap_err();
            assert!(refused.to_string().contains("outbound_allow"), "{url}: {refused}");
        }
        for url in ["https://hooks.partner.example/x", "http://93.184.216.34/"] {
            policy.check_url(&Url::parse(url).unwrap()).unwrap();
        }
    }

    #[test]
    fn a_refusal_says_what_the_address_is() {
        let policy = OutboundPolicy::default();
        let refused = policy
            .check_url(&Url::parse("http://169.254.169.254/").unwrap())
            .unwrap_err();
        assert!(
            refused
                .to_string()
                .starts_with("169.254.169.254 is a cloud metadata address;"),
            "{refused}"
        );
        let refused = policy
            .filter("internal.example", vec![SocketAddr::from(([10, 1, 2, 3], 443))])
            .unwrap_err();
        assert!(
            refused
                .to_string()
                .starts_with("internal.example resolves to 10.1.2.3, a private-network address;"),
            "{refused}"
        );
    }

    #[test]
    fn resolved_addresses_are_filtered_not_all_or_nothing() {
        let policy = OutboundPolicy::default();
        let public = SocketAddr::from(([93, 184, 216, 34], 443));
        let private = SocketAddr::from(([192, 168, 0, 1], 443));
        assert_eq!(
            policy.filter("mixed", vec![private, public]).unwrap(),
            vec![public]
        );
        assert!(policy.filter("inside", vec![private]).is_err());
        assert_eq!(policy.filter("none", vec![]).unwrap(), vec![]);
    }

    #[tokio::test]
    async fn names_are_checked_by_what_they_resolve_to() {
        let policy = OutboundPolicy::default();
        let localhost = Url::parse("http://localhost:9/").unwrap();
        let refused = policy.check_url_resolving(&localhost).await.unwrap_err();
        assert_eq!(refused.class, Blocked::Loopback, "{refused}");
        let open = OutboundPolicy::new([parse_net("127.0.0.0/8").unwrap(), parse_net("::1").unwrap()]);
        open.check_url_resolving(&localhost).await.unwrap();
    }

    #[test]
    fn a_refusal_is_found_in_an_error_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] Box<dyn std::error::Error + Send + Sync>);
        let refused = Refused {
            host: "x".into(),
            address: ip("10.0.0.1"),
            class: Blocked::Private,
        };
        let outer = Outer(Box::new(refused.clone()));
        assert_eq!(refusal(&outer), Some(&refused));
        let unrelated = Outer(Box::new(std::io::Error::other("nope")));
        assert_eq!(refusal(&unrelated), None);
    }
}
