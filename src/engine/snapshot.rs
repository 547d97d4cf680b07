//! `Snapshot`: a PostgreSQL transaction snapshot (`xmin:xmax:xip,…`) as belt stores it.

use std::fmt;
use std::str::FromStr;

/// A `txid_current_snapshot()` value. Validated on parse, so its text can be inlined
/// into SQL (COPY takes no parameters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    xmin: u64,
    xmax: u64,
    xip: Vec<u64>,
}

/// Text that is not a snapshot.
#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not a transaction snapshot (xmin:xmax:xip,…)")]
pub struct BadSnapshot(String);

impl Snapshot {
    /// Transactions below this had all finished when the snapshot was taken.
    pub fn xmin(&self) -> u64 {
        self.xmin
    }

    /// Transactions from this on had not started when the snapshot was taken.
    pub fn xmax(&self) -> u64 {
        self.xmax
    }

    /// `'…'::txid_snapshot`, for inlining into SQL.
    pub fn sql(&self) -> String {
        format!("'{self}'::txid_snapshot")
    }
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:", self.xmin, self.xmax)?;
        for (i, x) in self.xip.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{x}")?;
        }
        Ok(())
    }
}

impl FromStr for Snapshot {
    type Err = BadSnapshot;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadSnapshot(s.to_string());
        let mut parts = s.splitn(3, ':');
        let xmin = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let xmax = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let xip = match parts.next() {
            None => return Err(bad()),
            Some("") => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|x| x.parse().map_err(|_| bad()))
                .collect::<Result<_, _>>()?,
        };
        if xmin > xmax {
            return Err(bad());
        }
        Ok(Snapshot { xmin, xmax, xip })
    }
}

#[cfg(test)]
mod tests {
    use super::Snapshot;

    #[test]
    fn round_trips_and_rejects_garbage() {
        for s in ["10:10:", "10:20:12,15"] {
            assert_eq!(s.parse::<Snapshot>().unwrap().to_string(), s);
        }
        for s in ["", "1:2", "a:b:", "5:3:", "1:2:x", "1:2:'; drop table t; --"] {
            assert!(s.parse::<Snapshot>().is_err(), "{s}");
        }
    }
}
