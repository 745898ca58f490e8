//! A small network for partition tests: one Linux bridge with the test's own address (the
//! gateway, where PostgreSQL and the broker listen), and one network namespace per process,
//! joined to the bridge by a veth pair, with its own address. [`Lab::cut`] drops a link's
//! packets both ways with nftables inside the process's namespace, [`Lab::heal`] removes the
//! rule; TCP connections survive a cut, as they do when a real network drops packets.
//!
//! Real `ip` and `nft` tools, root only. Every name starts with a prefix unique to the lab,
//! the subnet is a /24 under 10.0.0.0/8 that no route on the machine covers, and dropping the
//! lab removes its namespaces, links and bridge.

use std::{
    net::Ipv4Addr,
    process::Command,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU32, Ordering},
    },
};

use anyhow::{Context, Result, bail};

/// One process's own network namespace and address.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub netns: String,
    pub ip: Ipv4Addr,
}

/// One end of a link: a host, or a port on the gateway (PostgreSQL, the broker).
#[derive(Debug, Clone, Copy)]
pub enum Peer {
    Host(Ipv4Addr),
    Gateway(u16),
}

/// A cut in force: the nftables table that drops it, in the namespace that holds it.
#[derive(Debug)]
pub struct Cut {
    netns: String,
    table: String,
}

pub struct Lab {
    prefix: String,
    bridge: String,
    /// The test's own address on the bridge.
    pub gateway: Ipv4Addr,
    /// The /24 every host is in, e.g. `10.140.7.0/24`.
    pub subnet: String,
    hosts: Mutex<Vec<Host>>,
    made: AtomicU32,
    cuts: AtomicU32,
}

fn run(program: &str, args: &[&str]) -> Result<()> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !output.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

fn in_netns(netns: &str, args: &[&str]) -> Result<()> {
    let mut all = vec!["netns", "exec", netns];
    all.extend_from_slice(args);
    run("ip", &all)
}

/// A 10.x.y.0/24 that no route of this machine covers (every table), chosen from `seed`.
fn free_subnet(seed: u32) -> Result<(u8, u8)> {
    let output = Command::new("ip")
        .args(["-4", "route", "show", "table", "all"])
        .output()
        .context("running ip route")?;
    let routes = String::from_utf8_lossy(&output.stdout).into_owned();
    let used: Vec<(u32, u32)> = routes
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let mut word = words.next()?;
            if matches!(word, "local" | "broadcast" | "unicast") {
                word = words.next()?;
            }
            let (addr, len) = word.split_once('/').unwrap_or((word, "32"));
            let addr: Ipv4Addr = addr.parse().ok()?;
            let len: u32 = len.parse().ok()?;
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            (len > 0).then_some((u32::from(addr) & mask, mask))
        })
        .collect();
    for i in 0..200u32 {
        let n = (seed.wrapping_add(i.wrapping_mul(7919))) % 30_000;
        let (b, c) = (130 + (n / 256 % 100) as u8, (n % 256) as u8);
        let net = u32::from(Ipv4Addr::new(10, b, c, 0));
        let overlaps = used
            .iter()
            .any(|(addr, mask)| (net & mask) == *addr || (addr & 0xffff_ff00) == net);
        if !overlaps {
            return Ok((b, c));
        }
    }
    bail!("no free 10.x.y.0/24 for the test network")
}

impl Lab {
    /// Creates the bridge and the gateway address. Fails (with the reason) unless run as root
    /// on a machine with `ip` and `nft`.
    pub fn create() -> Result<Lab> {
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .context("running id")?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            bail!("network namespaces need root");
        }
        run("nft", &["--version"]).context("nft (Debian package nftables)")?;
        let seed = std::process::id();
        let (b, c) = free_subnet(seed)?;
        let prefix = format!("tp{}", seed % 100_000);
        let lab = Lab {
            bridge: format!("{prefix}br"),
            prefix,
            gateway: Ipv4Addr::new(10, b, c, 1),
            subnet: format!("10.{b}.{c}.0/24"),
            hosts: Mutex::new(Vec::new()),
            made: AtomicU32::new(0),
            cuts: AtomicU32::new(0),
        };
        run("ip", &["link", "add", &lab.bridge, "type", "bridge"])?;
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/24", lab.gateway),
                "dev",
                &lab.bridge,
            ],
        )?;
        run("ip", &["link", "set", &lab.bridge, "up"])?;
        Ok(lab)
    }

    /// A new namespace named for `name`, with the next free address.
    pub fn host(&self, name: &str) -> Result<Host> {
        let n = self.made.fetch_add(1, Ordering::SeqCst) + 1;
        if n > 200 {
            bail!("a lab has at most 200 hosts");
        }
        let octets = self.gateway.octets();
        let ip = Ipv4Addr::new(octets[0], octets[1], octets[2], 1 + n as u8);
        let netns = format!("{}{n}", self.prefix);
        let (outside, inside) = (
            format!("{}v{n}", self.prefix),
            format!("{}p{n}", self.prefix),
        );
        run("ip", &["netns", "add", &netns])?;
        let host = Host {
            name: name.to_owned(),
            netns: netns.clone(),
            ip,
        };
        self.hosts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(host.clone());
        run(
            "ip",
            &[
                "link", "add", &outside, "type", "veth", "peer", "name", &inside,
            ],
        )?;
        run("ip", &["link", "set", &inside, "netns", &netns])?;
        run("ip", &["link", "set", &outside, "master", &self.bridge])?;
        run("ip", &["link", "set", &outside, "up"])?;
        in_netns(&netns, &["ip", "link", "set", "lo", "up"])?;
        in_netns(
            &netns,
            &["ip", "addr", "add", &format!("{ip}/24"), "dev", &inside],
        )?;
        in_netns(&netns, &["ip", "link", "set", &inside, "up"])?;
        Ok(host)
    }

    /// Drops every packet between `host` and `peer`, both ways, until [`Lab::heal`].
    pub fn cut(&self, host: &Host, peer: Peer) -> Result<Cut> {
        let n = self.cuts.fetch_add(1, Ordering::SeqCst) + 1;
        let table = format!("{}cut{n}", self.prefix);
        let (to, from) = match peer {
            Peer::Host(ip) => (format!("ip daddr {ip}"), format!("ip saddr {ip}")),
            Peer::Gateway(port) => (
                format!("ip daddr {} tcp dport {port}", self.gateway),
                format!("ip saddr {} tcp sport {port}", self.gateway),
            ),
        };
        let script = format!(
            "table inet {table} {{\n\
             chain in {{ type filter hook input priority -50; policy accept; {from} drop; }}\n\
             chain out {{ type filter hook output priority -50; policy accept; {to} drop; }}\n\
             }}\n"
        );
        let path = std::env::temp_dir().join(format!("{table}.nft"));
        std::fs::write(&path, script)?;
        let file = path.display().to_string();
        let result = in_netns(&host.netns, &["nft", "-f", &file]);
        let _ = std::fs::remove_file(&path);
        result.with_context(|| format!("cutting {} from {peer:?}", host.name))?;
        Ok(Cut {
            netns: host.netns.clone(),
            table,
        })
    }

    /// Whether a TCP connection from inside `host` to `ip`:`port` opens within a second (how
    /// a test proves that a cut holds and a heal works).
    pub fn reaches(&self, host: &Host, ip: Ipv4Addr, port: u16) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &host.netns, "timeout", "1"])
            .args(["bash", "-c", &format!("exec 3<>/dev/tcp/{ip}/{port}")])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    pub fn heal(&self, cut: Cut) -> Result<()> {
        in_netns(&cut.netns, &["nft", "delete", "table", "inet", &cut.table])
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let hosts = std::mem::take(&mut *self.hosts.lock().unwrap_or_else(PoisonError::into_inner));
        for host in hosts {
            // Deleting the namespace deletes its veth end, and with it the pair.
            let _ = run("ip", &["netns", "del", &host.netns]);
        }
        let _ = run("ip", &["link", "del", &self.bridge]);
    }
}
