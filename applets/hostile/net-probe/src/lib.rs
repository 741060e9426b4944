//! Hostile: tries every way out to the network a wasip2 guest has, and reports what it saw
//! in data sources `tcp`, `udp`, `dns` and `std_tcp`: "connected", "bound" or "resolved"
//! when the attempt got through, else the error (a wasi:sockets error code such as
//! `access-denied`, or std's error text). It never panics: every error is recorded.

use std::net::SocketAddr;

use coda_sdk::{Applet, Context, Failure, Info, Outcome};
use wasip2::sockets::instance_network::instance_network;
use wasip2::sockets::network::{
    ErrorCode, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress, Network,
};
use wasip2::sockets::{ip_name_lookup, tcp_create_socket, udp_create_socket};

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Where to connect (TCP) and send (UDP): `ip:port`.
    addr: String,
    /// The name to resolve.
    #[serde(default = "default_host")]
    host: String,
}

fn default_host() -> String {
    "localhost".into()
}

/// The successes; anything else a probe reports is an error.
const GOT_THROUGH: [&str; 3] = ["connected", "bound", "resolved"];

struct NetProbe;

impl Applet for NetProbe {
    type Config = Config;

    fn info() -> Info {
        Info::new("net-probe", env!("CARGO_PKG_VERSION"))
            .description("Tries to reach the network")
            .exits(["denied", "connected"])
    }

    fn run(cx: &mut Context, config: Config) -> Result<Outcome, Failure> {
        let addr = config.addr.parse::<SocketAddr>();
        let network = instance_network();
        let results = [
            ("tcp", probe_with(&addr, |a| tcp(&network, a))),
            ("udp", probe_with(&addr, |a| udp(&network, a))),
            ("dns", dns(&network, &config.host)),
            ("std_tcp", std_tcp(&config.addr)),
        ];
        let mut any = false;
        for (name, result) in &results {
            any |= GOT_THROUGH.contains(&result.as_str());
            cx.set_data(name, result)?;
        }
        Ok(Outcome::exit(if any { "connected" } else { "denied" }))
    }
}

fn probe_with(
    addr: &Result<SocketAddr, std::net::AddrParseError>,
    probe: impl FnOnce(SocketAddr) -> Result<&'static str, ErrorCode>,
) -> String {
    match addr {
        Ok(addr) => match probe(*addr) {
            Ok(seen) => seen.to_string(),
            Err(code) => code.name().to_string(),
        },
        Err(e) => format!("bad address: {e}"),
    }
}

fn family(addr: &SocketAddr) -> IpAddressFamily {
    match addr {
        SocketAddr::V4(_) => IpAddressFamily::Ipv4,
        SocketAddr::V6(_) => IpAddressFamily::Ipv6,
    }
}

fn wasi_addr(addr: &SocketAddr) -> IpSocketAddress {
    match addr {
        SocketAddr::V4(a) => {
            let [x, y, z, w] = a.ip().octets();
            IpSocketAddress::Ipv4(Ipv4SocketAddress {
                port: a.port(),
                address: (x, y, z, w),
            })
        }
        SocketAddr::V6(a) => {
            let s = a.ip().segments();
            IpSocketAddress::Ipv6(Ipv6SocketAddress {
                port: a.port(),
                flow_info: a.flowinfo(),
                address: (s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
                scope_id: a.scope_id(),
            })
        }
    }
}

/// The unspecified address of the same family, port 0: "any interface, any port".
fn any_addr(addr: &SocketAddr) -> IpSocketAddress {
    match addr {
        SocketAddr::V4(_) => IpSocketAddress::Ipv4(Ipv4SocketAddress {
            port: 0,
            address: (0, 0, 0, 0),
        }),
        SocketAddr::V6(_) => IpSocketAddress::Ipv6(Ipv6SocketAddress {
            port: 0,
            flow_info: 0,
            address: (0, 0, 0, 0, 0, 0, 0, 0),
            scope_id: 0,
        }),
    }
}

fn tcp(network: &Network, addr: SocketAddr) -> Result<&'static str, ErrorCode> {
    let socket = tcp_create_socket::create_tcp_socket(family(&addr))?;
    socket.start_connect(network, wasi_addr(&addr))?;
    loop {
        match socket.finish_connect() {
            Ok((input, output)) => {
                drop((input, output));
                return Ok("connected");
            }
            Err(ErrorCode::WouldBlock) => socket.subscribe().block(),
            Err(code) => return Err(code),
        }
    }
}

/// "connected" when the socket got bound and its remote address set, "bound" when only the
/// bind went through.
fn udp(network: &Network, addr: SocketAddr) -> Result<&'static str, ErrorCode> {
    let socket = udp_create_socket::create_udp_socket(family(&addr))?;
    socket.start_bind(network, any_addr(&addr))?;
    loop {
        match socket.finish_bind() {
            Ok(()) => break,
            Err(ErrorCode::WouldBlock) => socket.subscribe().block(),
            Err(code) => return Err(code),
        }
    }
    match socket.stream(Some(wasi_addr(&addr))) {
        Ok((incoming, outgoing)) => {
            drop((incoming, outgoing));
            Ok("connected")
        }
        Err(_) => Ok("bound"),
    }
}

fn dns(network: &Network, host: &str) -> String {
    let stream = match ip_name_lookup::resolve_addresses(network, host) {
        Ok(stream) => stream,
        Err(code) => return code.name().to_string(),
    };
    loop {
        match stream.resolve_next_address() {
            Ok(Some(_)) => {}
            Ok(None) => return "resolved".to_string(),
            Err(ErrorCode::WouldBlock) => stream.subscribe().block(),
            Err(code) => return code.name().to_string(),
        }
    }
}

fn std_tcp(addr: &str) -> String {
    match std::net::TcpStream::connect(addr) {
        Ok(_) => "connected".to_string(),
        Err(e) => e.to_string(),
    }
}

coda_sdk::export_applet!(NetProbe);
