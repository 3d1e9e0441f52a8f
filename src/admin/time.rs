//! Parsing the times operators type: ISO-8601 datetimes (`2026-11-21T10:15:30.000`, with an
//! optional `Z` or `±HH:MM` offset; no offset means UTC) and durations (`P1DT2H30M`,
//! `PT15M`, `PT30S`), as `kafka-consumer-groups --to-datetime / --by-duration` take them.

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn number(text: &str, what: &str) -> Result<i64, String> {
    text.parse().map_err(|_| format!("invalid {what} {text:?}"))
}

/// Parses an ISO-8601 datetime into milliseconds since the epoch.
pub fn parse_datetime_ms(text: &str) -> Result<i64, String> {
    let bad = || format!("expected YYYY-MM-DDTHH:mm:SS[.sss][Z|±HH:MM], got {text:?}");
    let (date, rest) = text.split_once('T').ok_or_else(bad)?;
    let mut date_parts = date.split('-');
    let (Some(y), Some(mo), Some(d), None) = (
        date_parts.next(),
        date_parts.next(),
        date_parts.next(),
        date_parts.next(),
    ) else {
        return Err(bad());
    };
    let (time, offset_minutes) = split_offset(rest).ok_or_else(bad)?;
    let mut time_parts = time.split(':');
    let hour = number(time_parts.next().ok_or_else(bad)?, "hour")?;
    let minute = number(time_parts.next().unwrap_or("0"), "minute")?;
    let seconds_text = time_parts.next().unwrap_or("0");
    let (whole, fraction) = seconds_text.split_once('.').unwrap_or((seconds_text, "0"));
    let second = number(whole, "second")?;
    let millis = number(&format!("{fraction:0<3}")[..3], "milliseconds")?;
    let (year, month, day) = (number(y, "year")?, number(mo, "month")?, number(d, "day")?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(bad());
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Ok(seconds * 1_000 + millis)
}

/// Splits a time from its zone: `Z` or `±HH:MM` (or `±HHMM`); none means UTC.
fn split_offset(text: &str) -> Option<(&str, i64)> {
    if let Some(time) = text.strip_suffix('Z') {
        return Some((time, 0));
    }
    match text.rfind(['+', '-']) {
        Some(at) => {
            let (time, zone) = text.split_at(at);
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let digits: String = zone[1..].chars().filter(char::is_ascii_digit).collect();
            if digits.len() != 4 {
                return None;
            }
            let hours: i64 = digits[..2].parse().ok()?;
            let minutes: i64 = digits[2..].parse().ok()?;
            Some((time, sign * (hours * 60 + minutes)))
        }
        None => Some((text, 0)),
    }
}

/// Parses an ISO-8601 duration (`PnDTnHnMnS`) into milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<i64, String> {
    let bad = || format!("expected an ISO-8601 duration like P1DT2H30M, got {text:?}");
    let body = text
        .strip_prefix('P')
        .or_else(|| text.strip_prefix('p'))
        .ok_or_else(bad)?;
    let (days_part, time_part) = match body.split_once(['T', 't']) {
        Some((d, t)) => (d, t),
        None => (body, ""),
    };
    let mut total = 0i64;
    let mut accumulate = |part: &str, units: &[(char, i64)]| -> Result<(), String> {
        let mut digits = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let (_, scale) = units
                .iter()
                .find(|(u, _)| u.eq_ignore_ascii_case(&c))
                .ok_or_else(bad)?;
            let n: i64 = digits.parse().map_err(|_| bad())?;
            total = total
                .checked_add(n.checked_mul(*scale).ok_or_else(bad)?)
                .ok_or_else(bad)?;
            digits.clear();
        }
        if digits.is_empty() {
            Ok(())
        } else {
            Err(bad())
        }
    };
    accumulate(days_part, &[('D', 86_400_000)])?;
    accumulate(time_part, &[('H', 3_600_000), ('M', 60_000), ('S', 1_000)])?;
    if body.is_empty() || body.eq_ignore_ascii_case("T") {
        return Err(bad());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes() {
        assert_eq!(parse_datetime_ms("1970-01-01T00:00:00.000").unwrap(), 0);
        assert_eq!(parse_datetime_ms("1970-01-01T00:00:01.5Z").unwrap(), 1_500);
        assert_eq!(
            parse_datetime_ms("2026-11-21T10:00:00Z").unwrap(),
            1_795_255_200_000
        );
        assert_eq!(
            parse_datetime_ms("2026-11-21T11:00:00+01:00").unwrap(),
            parse_datetime_ms("2026-11-21T10:00:00Z").unwrap()
        );
        assert!(parse_datetime_ms("yesterday").is_err());
        assert!(parse_datetime_ms("2026-13-01T00:00:00").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("P1DT2H30M").unwrap(), 95_400_000);
        assert_eq!(parse_duration_ms("PT15M").unwrap(), 900_000);
        assert_eq!(parse_duration_ms("P2D").unwrap(), 172_800_000);
        assert!(parse_duration_ms("P").is_err());
        assert!(parse_duration_ms("1H").is_err());
        assert!(parse_duration_ms("PT5X").is_err());
    }
}
