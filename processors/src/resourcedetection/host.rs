//! What the `system` detector reads about the machine besides its names: the first CPU of
//! `/proc/cpuinfo` (as gopsutil's `cpu.Info` reads it, which the Collector uses) and the
//! addresses of the network interfaces (as Go's `net.Interfaces` lists them).

use std::net::IpAddr;

/// The first CPU of `/proc/cpuinfo`, with gopsutil's field mapping (x86, arm64, ppc64,
/// s390x, riscv64 spellings).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CpuInfo {
    pub vendor_id: String,
    pub family: String,
    /// `model` (x86) or `CPU part` (arm64), as written: `85`, `0xd0c`.
    pub model: String,
    pub model_name: String,
    pub stepping: i32,
    /// `cache size` as written in the file, in KiB (gopsutil keeps the number, drops " KB").
    pub cache_size: i32,
}

/// ARM Ltd part numbers (`CPU part` when `CPU implementer` is 0x41) and their names, as
/// gopsutil names them (from the kernel's arch/arm64 cpuinfo tables).
const ARM_PARTS: &[(u64, &str)] = &[
    (0x810, "ARM810"),
    (0x920, "ARM920"),
    (0x922, "ARM922"),
    (0x926, "ARM926"),
    (0x940, "ARM940"),
    (0x946, "ARM946"),
    (0x966, "ARM966"),
    (0xa20, "ARM1020"),
    (0xa22, "ARM1022"),
    (0xa26, "ARM1026"),
    (0xb02, "ARM11 MPCore"),
    (0xb36, "ARM1136"),
    (0xb56, "ARM1156"),
    (0xb76, "ARM1176"),
    (0xc05, "Cortex-A5"),
    (0xc07, "Cortex-A7"),
    (0xc08, "Cortex-A8"),
    (0xc09, "Cortex-A9"),
    (0xc0d, "Cortex-A17"),
    (0xc0e, "Cortex-A17"),
    (0xc0f, "Cortex-A15"),
    (0xc14, "Cortex-R4"),
    (0xc15, "Cortex-R5"),
    (0xc17, "Cortex-R7"),
    (0xc18, "Cortex-R8"),
    (0xc20, "Cortex-M0"),
    (0xc21, "Cortex-M1"),
    (0xc23, "Cortex-M3"),
    (0xc24, "Cortex-M4"),
    (0xc27, "Cortex-M7"),
    (0xc60, "Cortex-M0+"),
    (0xd01, "Cortex-A32"),
    (0xd02, "Cortex-A34"),
    (0xd03, "Cortex-A53"),
    (0xd04, "Cortex-A35"),
    (0xd05, "Cortex-A55"),
    (0xd06, "Cortex-A65"),
    (0xd07, "Cortex-A57"),
    (0xd08, "Cortex-A72"),
    (0xd09, "Cortex-A73"),
    (0xd0a, "Cortex-A75"),
    (0xd0b, "Cortex-A76"),
    (0xd0c, "Neoverse-N1"),
    (0xd0d, "Cortex-A77"),
    (0xd0e, "Cortex-A76AE"),
    (0xd13, "Cortex-R52"),
    (0xd20, "Cortex-M23"),
    (0xd21, "Cortex-M33"),
    (0xd40, "Neoverse-V1"),
    (0xd41, "Cortex-A78"),
    (0xd42, "Cortex-A78AE"),
    (0xd43, "Cortex-A65AE"),
    (0xd44, "Cortex-X1"),
    (0xd46, "Cortex-A510"),
    (0xd47, "Cortex-A710"),
    (0xd48, "Cortex-X2"),
    (0xd49, "Neoverse-N2"),
    (0xd4a, "Neoverse-E1"),
    (0xd4b, "Cortex-A78C"),
    (0xd4c, "Cortex-X1C"),
    (0xd4d, "Cortex-A715"),
    (0xd4e, "Cortex-X3"),
    (0xd4f, "Neoverse-V2"),
    (0xd81, "Cortex-A720"),
    (0xd82, "Cortex-X4"),
    (0xd84, "Neoverse-V3"),
    (0xd85, "Cortex-X925"),
    (0xd87, "Cortex-A725"),
    (0xd8e, "Neoverse-N3"),
];

/// `CPU implementer` codes and the vendor names gopsutil gives them.
const ARM_IMPLEMENTERS: &[(u64, &str)] = &[
    (0x41, "ARM"),
    (0x42, "Broadcom"),
    (0x43, "Cavium"),
    (0x44, "DEC"),
    (0x46, "Fujitsu"),
    (0x48, "HiSilicon"),
    (0x49, "Infineon"),
    (0x4d, "Motorola/Freescale"),
    (0x4e, "NVIDIA"),
    (0x50, "APM"),
    (0x51, "Qualcomm"),
    (0x56, "Marvell"),
    (0x61, "Apple"),
    (0x69, "Intel"),
    (0xc0, "Ampere"),
];

/// RISC-V `mvendorid` codes and their vendor names.
const RISCV_VENDORS: &[(u64, &str)] = &[
    (0x31e, "Andes"),
    (0x029, "Microchip"),
    (0x127, "MIPS"),
    (0x489, "SiFive"),
    (0x5b7, "T-Head"),
];

/// Go's `strconv.ParseUint(s, 0, _)`: decimal, `0x` hex, `0o`/leading-0 octal, `0b` binary.
fn parse_uint_base0(text: &str) -> Option<u64> {
    let lower = text.to_ascii_lowercase();
    if let Some(hex) = lower.strip_prefix("0x") {
        u64::from_str_radix(hex, 16).ok()
    } else if let Some(bin) = lower.strip_prefix("0b") {
        u64::from_str_radix(bin, 2).ok()
    } else if let Some(oct) = lower.strip_prefix("0o") {
        u64::from_str_radix(oct, 8).ok()
    } else if lower.len() > 1 && lower.starts_with('0') {
        u64::from_str_radix(&lower[1..], 8).ok()
    } else {
        lower.parse().ok()
    }
}

fn lookup(table: &[(u64, &'static str)], code: u64) -> Option<&'static str> {
    table
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, name)| *name)
}

/// The first CPU described by `/proc/cpuinfo` text, None when the text names no
/// `processor`. A number gopsutil cannot parse (`processor`, `stepping`, `cache size`) is
/// an error, as it is for the Collector, in any CPU of the file.
pub(crate) fn parse_cpuinfo(text: &str) -> Result<Option<CpuInfo>, String> {
    let mut first: Option<CpuInfo> = None;
    let mut current: Option<CpuInfo> = None;
    // `Processor : AArch64 Processor rev 4 (aarch64)` at the top of older arm kernels'
    // files: the model name of every CPU that follows, unless it names its own.
    let mut processor_name = String::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        if matches!(key, "processor" | "cpu number") {
            value
                .parse::<i64>()
                .map_err(|_| format!("/proc/cpuinfo: processor {value:?} is not a number"))?;
            if let Some(done) = current.take() {
                first.get_or_insert(done);
            }
            current = Some(CpuInfo {
                model_name: processor_name.clone(),
                ..CpuInfo::default()
            });
            continue;
        }
        if key == "Processor" {
            processor_name = value.to_string();
            continue;
        }
        // Lines before the first `processor` belong to no CPU (gopsutil drops them).
        let Some(c) = current.as_mut() else {
            continue;
        };
        match key {
            "vendorId" | "vendor_id" => {
                c.vendor_id = value.to_string();
                if value.contains("S390") {
                    processor_name = "S390".to_string();
                }
            }
            "mvendorid" => {
                if let Some(name) = value
                    .strip_prefix("0x")
                    .and_then(|hex| u64::from_str_radix(hex, 16).ok())
                    .and_then(|code| lookup(RISCV_VENDORS, code))
                {
                    c.vendor_id = name.to_string();
                }
            }
            "CPU implementer" => {
                if let Some(name) = parse_uint_base0(value)
                    .filter(|v| *v <= 0xff)
                    .and_then(|code| lookup(ARM_IMPLEMENTERS, code))
                {
                    c.vendor_id = name.to_string();
                }
            }
            "cpu family" | "marchid" => c.family = value.to_string(),
            "model" | "CPU part" | "mimpid" => {
                c.model = value.to_string();
                if c.vendor_id == "ARM"
                    && let Some(part) = parse_uint_base0(value).filter(|v| *v <= 0xffff)
                {
                    c.model_name = lookup(ARM_PARTS, part).unwrap_or("Undefined").to_string();
                }
            }
            "Model Name" | "model name" | "cpu" | "uarch" => {
                c.model_name = value.to_string();
                if value.contains("POWER") {
                    c.model = value.split(' ').next().unwrap_or_default().to_string();
                    c.family = "POWER".to_string();
                    c.vendor_id = "IBM".to_string();
                }
            }
            "stepping" | "revision" | "CPU revision" => {
                let number = if key == "revision" {
                    value.split('.').next().unwrap_or_default()
                } else {
                    value
                };
                if number.eq_ignore_ascii_case("unknown") {
                    continue;
                }
                c.stepping = number
                    .parse::<i64>()
                    .map_err(|_| format!("/proc/cpuinfo: {key} {value:?} is not a number"))?
                    as i32;
            }
            "cache size" => {
                c.cache_size = value.replacen(" KB", "", 1).parse::<i64>().map_err(|_| {
                    format!("/proc/cpuinfo: cache size {value:?} is not a number of KB")
                })? as i32;
            }
            _ => {}
        }
    }
    if let Some(done) = current.take() {
        first.get_or_insert(done);
    }
    Ok(first)
}

/// One network interface with the addresses `getifaddrs` lists for it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Interface {
    pub name: String,
    pub index: u32,
    pub up: bool,
    pub loopback: bool,
    /// Hardware address; empty when the interface has none (tunnels).
    pub mac: Vec<u8>,
    /// IPv4 addresses first, then IPv6, in the kernel's order.
    pub ips: Vec<IpAddr>,
}

/// `host.ip`: every address of every interface that is up and not a loopback interface,
/// loopback addresses left out; Go's `net.IP.String()` text (Rust's `IpAddr` display is
/// the same RFC 5952 form, without a zone).
pub(crate) fn host_ips(interfaces: &[Interface]) -> Vec<String> {
    interfaces
        .iter()
        .filter(|i| i.up && !i.loopback)
        .flat_map(|i| i.ips.iter())
        .filter(|ip| !ip.is_loopback())
        .map(IpAddr::to_string)
        .collect()
}

/// `host.mac`: the hardware address of every interface that is up and not a loopback
/// interface, in IEEE RA form (`AC-DE-48-23-45-67`); an interface without one (a tunnel)
/// gives `""`, as the Collector formats Go's empty `net.HardwareAddr`.
pub(crate) fn host_macs(interfaces: &[Interface]) -> Vec<String> {
    interfaces
        .iter()
        .filter(|i| i.up && !i.loopback)
        .map(|i| {
            i.mac
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect()
}

/// The machine's interfaces in index order (Go's `net.Interfaces` order), from `getifaddrs`.
pub(crate) fn interfaces() -> Result<Vec<Interface>, String> {
    let mut list: Vec<Interface> = Vec::new();
    // SAFETY: getifaddrs fills a linked list that stays valid until freeifaddrs; every
    // pointer is checked for null before it is read, and sockaddrs are read as the type
    // their family says.
    unsafe {
        let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut head) != 0 {
            return Err(format!(
                "listing network interfaces: {}",
                std::io::Error::last_os_error()
            ));
        }
        let mut entry = head;
        while !entry.is_null() {
            let ifa = &*entry;
            entry = ifa.ifa_next;
            if ifa.ifa_name.is_null() {
                continue;
            }
            let name = std::ffi::CStr::from_ptr(ifa.ifa_name)
                .to_string_lossy()
                .into_owned();
            let position = match list.iter().position(|i| i.name == name) {
                Some(p) => p,
                None => {
                    list.push(Interface {
                        index: libc::if_nametoindex(ifa.ifa_name),
                        name,
                        up: ifa.ifa_flags & libc::IFF_UP as libc::c_uint != 0,
                        loopback: ifa.ifa_flags & libc::IFF_LOOPBACK as libc::c_uint != 0,
                        ..Interface::default()
                    });
                    list.len() - 1
                }
            };
            let interface = &mut list[position];
            if ifa.ifa_addr.is_null() {
                continue;
            }
            match (*ifa.ifa_addr).sa_family as libc::c_int {
                libc::AF_INET => {
                    let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    // s_addr holds the address bytes in network order.
                    interface
                        .ips
                        .push(IpAddr::from(sin.sin_addr.s_addr.to_ne_bytes()));
                }
                libc::AF_INET6 => {
                    let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    interface.ips.push(IpAddr::from(sin6.sin6_addr.s6_addr));
                }
                #[cfg(any(target_os = "linux", target_os = "android"))]
                libc::AF_PACKET => {
                    let sll = &*(ifa.ifa_addr as *const libc::sockaddr_ll);
                    let len = (sll.sll_halen as usize).min(sll.sll_addr.len());
                    let mac = &sll.sll_addr[..len];
                    // Go reports no hardware address when every byte is zero.
                    if mac.iter().any(|b| *b != 0) {
                        interface.mac = mac.to_vec();
                    }
                }
                _ => {}
            }
        }
        libc::freeifaddrs(head);
    }
    // IPv4 before IPv6 within an interface, as the kernel's address dump lists them.
    for interface in &mut list {
        interface.ips.sort_by_key(|ip| ip.is_ipv6());
    }
    list.sort_by_key(|i| i.index);
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two CPUs of an Intel Xeon (recorded from an EC2 m5 instance).
    const X86: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 85\nmodel name\t: Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz\nstepping\t: 7\nmicrocode\t: 0x5003604\ncpu MHz\t\t: 2499.998\ncache size\t: 36608 KB\nphysical id\t: 0\nsiblings\t: 2\ncore id\t\t: 0\ncpu cores\t: 1\nflags\t\t: fpu vme de pse tsc msr\nbogomips\t: 4999.99\naddress sizes\t: 46 bits physical, 48 bits virtual\npower management:\n\nprocessor\t: 1\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 85\nmodel name\t: Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz\nstepping\t: 7\ncache size\t: 36608 KB\n\n";

    /// Two CPUs of an AWS Graviton2 (Neoverse N1), arm64 kernel format.
    const ARM64: &str = "processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\nprocessor\t: 1\nBogoMIPS\t: 243.75\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\n";

    #[test]
    fn x86_cpuinfo_maps_like_gopsutil() {
        let cpu = parse_cpuinfo(X86).expect("parses").expect("one cpu");
        assert_eq!(
            cpu,
            CpuInfo {
                vendor_id: "GenuineIntel".into(),
                family: "6".into(),
                model: "85".into(),
                model_name: "Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz".into(),
                stepping: 7,
                cache_size: 36608,
            }
        );
    }

    #[test]
    fn arm64_cpuinfo_names_vendor_and_part() {
        let cpu = parse_cpuinfo(ARM64).expect("parses").expect("one cpu");
        assert_eq!(cpu.vendor_id, "ARM");
        assert_eq!(cpu.family, "");
        assert_eq!(cpu.model, "0xd0c");
        assert_eq!(cpu.model_name, "Neoverse-N1");
        assert_eq!(cpu.stepping, 1);
        assert_eq!(cpu.cache_size, 0);
        // Another implementer keeps the part number but no ARM Ltd name; an unknown
        // ARM Ltd part is "Undefined".
        let ampere = ARM64.replace("0x41", "0xc0");
        let cpu = parse_cpuinfo(&ampere).expect("parses").expect("one cpu");
        assert_eq!(
            (cpu.vendor_id.as_str(), cpu.model_name.as_str()),
            ("Ampere", "")
        );
        let unknown = ARM64.replace("0xd0c", "0xfff");
        let cpu = parse_cpuinfo(&unknown).expect("parses").expect("one cpu");
        assert_eq!(cpu.model_name, "Undefined");
    }

    #[test]
    fn old_arm_processor_line_names_every_cpu() {
        let text = "Processor\t: AArch64 Processor rev 4 (aarch64)\nprocessor\t: 0\nCPU implementer\t: 0x51\nCPU part\t: 0x801\nCPU revision\t: 4\n";
        let cpu = parse_cpuinfo(text).expect("parses").expect("one cpu");
        assert_eq!(cpu.model_name, "AArch64 Processor rev 4 (aarch64)");
        assert_eq!(cpu.vendor_id, "Qualcomm");
        assert_eq!(cpu.stepping, 4);
    }

    #[test]
    fn power_and_bad_numbers() {
        let power = "processor\t: 0\ncpu\t\t: POWER9 (raw), altivec supported\nrevision\t: 2.2 (pvr 004e 1202)\n";
        let cpu = parse_cpuinfo(power).expect("parses").expect("one cpu");
        assert_eq!(
            (
                cpu.vendor_id.as_str(),
                cpu.family.as_str(),
                cpu.model.as_str(),
                cpu.stepping
            ),
            ("IBM", "POWER", "POWER9", 2)
        );
        assert_eq!(parse_cpuinfo("").expect("parses"), None);
        assert!(parse_cpuinfo("processor : 0\nstepping : x\n").is_err());
        assert!(parse_cpuinfo("processor : 0\ncache size : lots\n").is_err());
        assert!(parse_cpuinfo("processor : zero\n").is_err());
        // An error in a later CPU fails the whole file, as in gopsutil.
        assert!(parse_cpuinfo(&format!("{X86}processor : 2\nstepping : ?\n")).is_err());
        let unknown = parse_cpuinfo("processor : 0\nstepping : unknown\n").expect("parses");
        assert_eq!(unknown.map(|c| c.stepping), Some(0));
    }

    #[test]
    fn addresses_and_macs_skip_down_and_loopback_interfaces() {
        let interfaces = vec![
            Interface {
                name: "lo".into(),
                index: 1,
                up: true,
                loopback: true,
                mac: vec![0; 6],
                ips: vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
            },
            Interface {
                name: "eth0".into(),
                index: 2,
                up: true,
                loopback: false,
                mac: vec![0x02, 0x42, 0xac, 0x11, 0x00, 0x02],
                ips: vec![
                    "172.17.0.2".parse().unwrap(),
                    "127.0.0.5".parse().unwrap(),
                    "fe80::42:acff:fe11:2".parse().unwrap(),
                ],
            },
            Interface {
                name: "eth1".into(),
                index: 3,
                up: false,
                loopback: false,
                mac: vec![0x02, 0, 0, 0, 0, 1],
                ips: vec!["10.0.0.1".parse().unwrap()],
            },
            Interface {
                name: "tun0".into(),
                index: 4,
                up: true,
                loopback: false,
                mac: Vec::new(),
                ips: vec!["2001:db8::1".parse().unwrap()],
            },
        ];
        assert_eq!(
            host_ips(&interfaces),
            vec!["172.17.0.2", "fe80::42:acff:fe11:2", "2001:db8::1"]
        );
        assert_eq!(host_macs(&interfaces), vec!["02-42-AC-11-00-02", ""]);
    }

    #[test]
    fn real_interfaces_are_listed_in_index_order() {
        let list = interfaces().expect("getifaddrs works");
        assert!(list.windows(2).all(|w| w[0].index <= w[1].index));
        // Whatever this machine has, nothing reported is a loopback address.
        assert!(
            host_ips(&list)
                .iter()
                .all(|ip| ip != "127.0.0.1" && ip != "::1")
        );
    }
}
