//! Daily schedules, as pure logic: which run is due at a given time. The
//! clock is an argument, so tests inject one; the claim that makes one
//! worker run a slot lives with the records (`jobs`).

use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveTime, Utc};

use crate::Error;

/// A time of day, UTC, at which a job runs every day.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// let at: registry_ops::Daily = "02:00".parse()?;
/// // At 05:00 the run due is today's 02:00 one (a worker that was down
/// // at 02:00 catches up once); at 01:00 it is yesterday's.
/// let slot = at.slot(Utc.with_ymd_and_hms(2026, 11, 30, 5, 0, 0).unwrap());
/// assert_eq!(slot.id, "2026-11-30");
/// let slot = at.slot(Utc.with_ymd_and_hms(2026, 11, 30, 1, 0, 0).unwrap());
/// assert_eq!(slot.id, "2026-11-29");
/// assert_eq!(
///     at.next_after(Utc.with_ymd_and_hms(2026, 11, 30, 5, 0, 0).unwrap()),
///     Utc.with_ymd_and_hms(2026, 12, 1, 2, 0, 0).unwrap()
/// );
/// # Ok::<(), registry_ops::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Daily {
    at: NaiveTime,
}

/// One day's run of a [`Daily`] job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    /// The day, `YYYY-MM-DD`: what workers claim.
    pub id: String,
    /// When it became due.
    pub start: DateTime<Utc>,
}

impl FromStr for Daily {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::ScheduleTime(s.to_owned());
        let (h, m) = s.split_once(':').ok_or_else(bad)?;
        if h.len() != 2 || m.len() != 2 {
            return Err(bad());
        }
        let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        let at = NaiveTime::from_hms_opt(h, m, 0).ok_or_else(bad)?;
        Ok(Self { at })
    }
}

impl std::fmt::Display for Daily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.at.format("%H:%M"))
    }
}

impl Daily {
    /// The latest run due at or before `now`.
    pub fn slot(&self, now: DateTime<Utc>) -> Slot {
        let today = now.date_naive().and_time(self.at).and_utc();
        let start = if today <= now {
            today
        } else {
            today - Duration::days(1)
        };
        Slot {
            id: start.format("%Y-%m-%d").to_string(),
            start,
        }
    }

    /// The first run due strictly after `now`.
    pub fn next_after(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.slot(now).start + Duration::days(1)
    }
}

/// What a scheduler does at `now`, given the slot it last looked at:
/// `Some(slot)` when a slot it has not tried to claim yet is due.
/// A slot is tried once per process; the claim in the records makes it
/// once across processes.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// let at: registry_ops::Daily = "03:00".parse()?;
/// let now = Utc.with_ymd_and_hms(2026, 11, 30, 3, 0, 1).unwrap();
/// let due = registry_ops::schedule_due(&at, now, None).unwrap();
/// assert_eq!(registry_ops::schedule_due(&at, now, Some(&due.id)), None);
/// # Ok::<(), registry_ops::Error>(())
/// ```
pub fn due(at: &Daily, now: DateTime<Utc>, last_tried: Option<&str>) -> Option<Slot> {
    let slot = at.slot(now);
    (last_tried != Some(slot.id.as_str())).then_some(slot)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use chrono::TimeZone;

    use super::*;

    fn t(d: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, d, h, m, 0).unwrap()
    }

    #[test]
    fn parses_times() {
        assert_eq!("02:00".parse::<Daily>().unwrap().to_string(), "02:00");
        for bad in [
            "2:00", "24:00", "12:60", "1200", "", "ab:cd", "-1:00", "02:00:00",
        ] {
            assert!(bad.parse::<Daily>().is_err(), "{bad}");
        }
    }

    /// Two workers and a restart over three days with an injected clock:
    /// each day's slot runs once, a worker down at 02:00 catches up once
    /// when it comes back, and nobody runs a slot twice.
    #[test]
    fn each_slot_runs_once_across_workers_and_restarts() {
        let at: Daily = "02:00".parse().unwrap();
        let mut claims: HashSet<String> = HashSet::new();
        let mut runs: Vec<(&str, String)> = Vec::new();
        let mut last = [None::<String>, None::<String>];
        // Worker b is down from day 1 01:00 to day 2 05:00; worker a is
        // down on day 2 from 01:00 to 06:00: day 2's run happens at 05:00
        // on b, late, once.
        let ticks = [
            (t(1, 1, 59), [true, true]),
            (t(1, 2, 0), [true, false]),
            (t(1, 2, 1), [true, false]),
            (t(1, 23, 0), [true, false]),
            (t(2, 4, 0), [false, false]),
            (t(2, 5, 0), [false, true]),
            (t(2, 6, 0), [true, true]),
            (t(3, 2, 0), [true, true]),
            (t(3, 2, 30), [true, true]),
        ];
        for (now, up) in ticks {
            for (w, name) in ["a", "b"].into_iter().enumerate() {
                if !up[w] {
                    // A restart forgets what it tried; the claims remain.
                    last[w] = None;
                    continue;
                }
                if let Some(slot) = due(&at, now, last[w].as_deref()) {
                    last[w] = Some(slot.id.clone());
                    if claims.insert(slot.id.clone()) {
                        runs.push((name, slot.id));
                    }
                }
            }
        }
        assert_eq!(
            runs,
            vec![
                ("a", "2026-10-31".to_owned()),
                ("a", "2026-11-01".to_owned()),
                ("b", "2026-11-02".to_owned()),
                ("a", "2026-11-03".to_owned()),
            ]
        );
    }

    #[test]
    fn next_is_strictly_later() {
        let at: Daily = "00:00".parse().unwrap();
        assert_eq!(at.next_after(t(5, 0, 0)), t(6, 0, 0));
        assert_eq!(at.slot(t(5, 0, 0)).start, t(5, 0, 0));
    }
}
