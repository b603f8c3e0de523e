//! Which addresses a shard announces in its candidates.
//!
//! The addresses clients should send to are not always the bound one: a cloud VM behind 1:1
//! NAT binds its private address and is reached at its public one (`announce_ips`); a router
//! bound to a wildcard (`0.0.0.0`, `::`) is reached at its interfaces' addresses. Each address
//! gets a UDP candidate at the shard's UDP port and, with ICE-TCP on, a TCP one at its TCP port.

use std::net::{IpAddr, SocketAddr};

use schema::api::IceCandidate;

/// The announced IPs: `announce` when given, else the bound IP, else (a wildcard) every
/// interface address of the bound family (both for `::`, whose socket also takes IPv4),
/// loopback last and only when nothing else is up.
pub fn announced_ips(bound: IpAddr, announce: &[IpAddr]) -> Vec<IpAddr> {
    if !announce.is_empty() {
        return announce.to_vec();
    }
    if !bound.is_unspecified() {
        return vec![bound];
    }
    let mut ips: Vec<IpAddr> = interface_addresses()
        .into_iter()
        .filter(|ip| bound.is_ipv6() || ip.is_ipv4())
        // Link-local IPv6 needs a scope id no SDP candidate carries.
        .filter(|ip| !matches!(ip, IpAddr::V6(v6) if v6.is_unicast_link_local()))
        .collect();
    let (mut loopback, others): (Vec<IpAddr>, Vec<IpAddr>) = ips.drain(..).partition(|ip| ip.is_loopback());
    if others.is_empty() {
        loopback.truncate(1);
        return loopback;
    }
    others
}

/// A shard's candidates: UDP for every announced IP first, then TCP (RFC 6544 passive).
pub fn shard_candidates(ips: &[IpAddr], udp_port: u16, tcp_port: Option<u16>) -> Vec<IceCandidate> {
    let udp = ips.iter().map(|ip| IceCandidate::udp(SocketAddr::new(*ip, udp_port)));
    let tcp =
        tcp_port.into_iter().flat_map(|port| ips.iter().map(move |ip| IceCandidate::tcp(SocketAddr::new(*ip, port))));
    udp.chain(tcp).collect()
}

/// The addresses of the interfaces that are up (getifaddrs), without duplicates.
fn interface_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, alive until freeifaddrs.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        let up = ifa.ifa_flags & (libc::IFF_UP as u32) != 0;
        if !up || ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_addr points at a sockaddr whose family says which struct it is.
        let ip = unsafe {
            match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    // s_addr holds the octets in network order: its bytes in memory are the address.
                    IpAddr::from(sin.sin_addr.s_addr.to_ne_bytes())
                }
                libc::AF_INET6 => {
                    let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    IpAddr::from(sin6.sin6_addr.s6_addr)
                }
                _ => continue,
            }
        };
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announced_addresses_replace_the_bound_one() {
        let public: Vec<IpAddr> = vec!["203.0.113.7".parse().unwrap(), "2001:db8::7".parse().unwrap()];
        assert_eq!(announced_ips("10.0.0.5".parse().unwrap(), &public), public);
        assert_eq!(announced_ips("10.0.0.5".parse().unwrap(), &[]), vec!["10.0.0.5".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn a_wildcard_announces_the_interfaces_of_its_family() {
        let v4 = announced_ips("0.0.0.0".parse().unwrap(), &[]);
        assert!(!v4.is_empty(), "at least loopback is up");
        assert!(v4.iter().all(|ip| ip.is_ipv4() && !ip.is_unspecified()), "{v4:?}");
        assert!(v4.len() == 1 || v4.iter().all(|ip| !ip.is_loopback()), "loopback only alone: {v4:?}");
    }

    #[test]
    fn udp_candidates_come_first_then_tcp_for_each_address() {
        let ips: Vec<IpAddr> = vec!["203.0.113.7".parse().unwrap(), "2001:db8::7".parse().unwrap()];
        let c = shard_candidates(&ips, 40000, Some(40001));
        let text: Vec<String> = c.iter().map(|c| format!("{:?} {}", c.protocol, c.addr)).collect();
        assert_eq!(
            text,
            ["Udp 203.0.113.7:40000", "Udp [2001:db8::7]:40000", "Tcp 203.0.113.7:40001", "Tcp [2001:db8::7]:40001"]
        );
        assert_eq!(shard_candidates(&ips[..1], 40000, None).len(), 1);
    }
}
