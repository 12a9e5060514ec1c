//! The consistent hash ring of the `loadbalancing` exporter, built as the Collector's
//! loadbalancingexporter builds it, so that given the same backend list the same key lands
//! on the same backend as it would with the Collector:
//!
//! - the circle has 36000 positions (360 degrees with two decimals);
//! - each backend takes 100 positions: CRC-32 (IEEE) of its endpoint string followed by one
//!   byte `i` (0..100), modulo 36000; backends are placed in sorted order and a position
//!   already taken is skipped (the first backend keeps it);
//! - a key's position is CRC-32 (IEEE) of the key bytes modulo 36000, and its backend is the
//!   one at the first ring position at or after it, wrapping around to the first.
//!
//! Adding or removing one of N backends moves only the keys whose next position belonged
//! to it: about 1/N of them. This module never decides what a key is (see `routing`).

/// Positions on the circle.
pub const MAX_POSITIONS: u32 = 36_000;
/// Positions each backend takes.
pub const POINTS_PER_BACKEND: usize = 100;

/// An immutable ring over a sorted, de-duplicated list of backend endpoints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ring {
    /// (position, index into `endpoints`), sorted by position.
    points: Vec<(u32, usize)>,
    endpoints: Vec<String>,
}

/// The ring position of a routing key.
pub fn position(key: &[u8]) -> u32 {
    crc32fast::hash(key) % MAX_POSITIONS
}

impl Ring {
    /// Builds the ring for `endpoints` (their order does not matter: they are sorted, as the
    /// Collector's resolvers sort them, and duplicates are dropped).
    pub fn new(endpoints: &[String]) -> Ring {
        let mut endpoints = endpoints.to_vec();
        endpoints.sort();
        endpoints.dedup();
        let mut taken = std::collections::HashSet::new();
        let mut points = Vec::with_capacity(endpoints.len() * POINTS_PER_BACKEND);
        for (index, endpoint) in endpoints.iter().enumerate() {
            for i in 0..POINTS_PER_BACKEND {
                let mut hasher = crc32fast::Hasher::new();
                hasher.update(endpoint.as_bytes());
                hasher.update(&[i as u8]);
                let pos = hasher.finalize() % MAX_POSITIONS;
                if taken.insert(pos) {
                    points.push((pos, index));
                }
            }
        }
        points.sort_unstable();
        Ring { points, endpoints }
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// The backends of the ring, sorted.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The index (into [`Ring::endpoints`]) of the backend owning `position`, or None on an
    /// empty ring.
    pub fn owner(&self, position: u32) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let at = self.points.partition_point(|(pos, _)| *pos < position);
        let (_, index) = self.points.get(at).unwrap_or(&self.points[0]);
        Some(*index)
    }

    /// The endpoint owning `key`, or None on an empty ring.
    pub fn endpoint_for(&self, key: &[u8]) -> Option<&str> {
        self.owner(position(key))
            .map(|index| self.endpoints[index].as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(names: &[&str]) -> Ring {
        Ring::new(&names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
    }

    /// Positions computed independently of `Ring::new`: CRC-32 of "endpoint-1" followed by
    /// byte 0, as the Collector's positionsFor computes its first point.
    #[test]
    fn positions_follow_the_collectors_formula() {
        let mut bytes = b"endpoint-1".to_vec();
        bytes.push(0);
        let expected = crc32fast::hash(&bytes) % MAX_POSITIONS;
        let r = ring(&["endpoint-1"]);
        assert!(r.points.iter().any(|(pos, _)| *pos == expected));
        // CRC-32/IEEE check value: "123456789" -> 0xCBF43926.
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
        assert_eq!(position(b"123456789"), 0xCBF4_3926 % MAX_POSITIONS);
        assert!(r.points.len() <= POINTS_PER_BACKEND && r.points.len() > 90);
    }

    #[test]
    fn a_key_goes_to_the_next_position_wrapping_around() {
        let r = ring(&["a:4317", "b:4317", "c:4317"]);
        let (first, first_owner) = r.points[0];
        let (last, _) = *r.points.last().unwrap();
        // Exactly on a point, just before it, and past the last point (wraps to the first).
        assert_eq!(r.owner(first), Some(first_owner));
        if first > 0 {
            assert_eq!(r.owner(first - 1), Some(first_owner));
        }
        if last + 1 < MAX_POSITIONS {
            assert_eq!(r.owner(last + 1), Some(first_owner));
        }
        for window in r.points.windows(2) {
            let ((a, _), (b, owner_b)) = (window[0], window[1]);
            if b > a + 1 {
                assert_eq!(r.owner(a + 1), Some(owner_b));
            }
        }
        assert_eq!(Ring::new(&[]).owner(5), None);
    }

    #[test]
    fn order_and_duplicates_of_the_list_do_not_matter() {
        assert_eq!(ring(&["b", "a", "c"]), ring(&["a", "b", "c", "a"]));
    }

    /// Share of `keys` whose backend differs between two rings.
    fn moved(before: &Ring, after: &Ring, keys: usize) -> f64 {
        let mut moved = 0;
        for k in 0..keys {
            let key = format!("service-{k}");
            if before.endpoint_for(key.as_bytes()) != after.endpoint_for(key.as_bytes()) {
                moved += 1;
            }
        }
        moved as f64 / keys as f64
    }

    fn backends(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{}:4317", i + 1)).collect()
    }

    #[test]
    fn adding_or_removing_one_of_n_backends_moves_about_one_nth_of_the_keys() {
        for n in [3usize, 5, 8] {
            let small = Ring::new(&backends(n));
            let large = Ring::new(&backends(n + 1));
            let share = moved(&small, &large, 20_000);
            let ideal = 1.0 / (n + 1) as f64;
            assert!(
                share > ideal * 0.5 && share < ideal * 1.6,
                "{n} -> {} backends moved {share:.3} of keys (ideal {ideal:.3})",
                n + 1
            );
            // Every moved key moved to the new backend, never between old ones.
            let new = &backends(n + 1)[n];
            for k in 0..5_000 {
                let key = format!("service-{k}");
                let (a, b) = (
                    small.endpoint_for(key.as_bytes()),
                    large.endpoint_for(key.as_bytes()),
                );
                if a != b {
                    assert_eq!(b, Some(new.as_str()), "{key} moved between old backends");
                }
            }
        }
    }

    #[test]
    fn keys_spread_over_all_backends() {
        let r = Ring::new(&backends(4));
        let mut counts = std::collections::HashMap::new();
        for k in 0..20_000 {
            let key = format!("trace-{k}");
            *counts.entry(r.endpoint_for(key.as_bytes())).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 4);
        for (endpoint, count) in counts {
            assert!(
                (2_500..=7_500).contains(&count),
                "{endpoint:?} got {count} of 20000 keys"
            );
        }
    }
}
