//! `MESSAGE_ID=` of the manager's lines, as systemd's sd-messages.h numbers them.
//!
//! Since format v3 the manager stores the id with each line it writes
//! (`supervisor::lines::Line::message_id`, from these constants). Stores of
//! v1 and v2 have no column for it; their manager lines were worded exactly
//! as systemd 252 does (`supervisor::lines`, whose tests check every wording
//! against the table below), so for an entry without a stored id the id is
//! recognised from a manager line's wording ([`entry_message_id`]). Lines of
//! the units themselves never get one.

/// SD_MESSAGE_UNIT_STARTING: "Starting X..."
pub const UNIT_STARTING: &str = "7d4958e842da4a758f6c1cdc7b36dcc5";
/// SD_MESSAGE_UNIT_STARTED: a start job done ("Started", "Finished", "Reached target").
pub const UNIT_STARTED: &str = "39f53479d3a045ac8e11786248231fbf";
/// SD_MESSAGE_UNIT_FAILED: a start job that did not succeed.
pub const UNIT_FAILED: &str = "be02cf6855d2428ba40df7e9d022f03d";
/// SD_MESSAGE_UNIT_STOPPING: "Stopping X..."
pub const UNIT_STOPPING: &str = "de5b426a63be47a7b6ac3eaac82e2f6f";
/// SD_MESSAGE_UNIT_STOPPED: a stop job done.
pub const UNIT_STOPPED: &str = "9d1aaa27d60140bd96365438aad20286";
/// SD_MESSAGE_UNIT_RELOADING: "Reloading X..."
pub const UNIT_RELOADING: &str = "d34d037fff1847e6ae669a370e694725";
/// SD_MESSAGE_UNIT_RELOADED: a reload job done (or failed).
pub const UNIT_RELOADED: &str = "7b05ebc668384222baa8881179cfda54";
/// SD_MESSAGE_UNIT_RESTART_SCHEDULED.
pub const UNIT_RESTART_SCHEDULED: &str = "5eb03494b6584870a536b337290809b3";
/// SD_MESSAGE_UNIT_RESOURCES: "Consumed ... CPU time."
pub const UNIT_RESOURCES: &str = "ae8f7b866b0347b9af31fe1c80b127c0";
/// SD_MESSAGE_UNIT_SUCCESS: "Deactivated successfully."
pub const UNIT_SUCCESS: &str = "7ad2d189f7e94e70a38c781354912448";
/// SD_MESSAGE_UNIT_SKIPPED: "Skipped due to '...'."
pub const UNIT_SKIPPED: &str = "0e4284a0caca4bfc81c0bb6786972673";
/// SD_MESSAGE_UNIT_FAILURE_RESULT: "Failed with result '...'."
pub const UNIT_FAILURE_RESULT: &str = "d9b373ed55a64feb8242e02dbe79a49c";
/// SD_MESSAGE_UNIT_PROCESS_EXIT: "Main process exited, ..."
pub const UNIT_PROCESS_EXIT: &str = "98e322203f7a4ed290d09fe03c09fe15";

/// Job lines: they begin with a word and name the unit inside.
const JOB_LINES: &[(&str, &str, &str)] = &[
    ("Starting ", "...", UNIT_STARTING),
    ("Stopping ", "...", UNIT_STOPPING),
    ("Reloading ", "...", UNIT_RELOADING),
    ("Started ", ".", UNIT_STARTED),
    ("Finished ", ".", UNIT_STARTED),
    ("Reached target ", ".", UNIT_STARTED),
    ("Failed to start ", ".", UNIT_FAILED),
    ("Dependency failed for ", ".", UNIT_FAILED),
    ("Assertion failed for ", ".", UNIT_FAILED),
    ("Stopped ", ".", UNIT_STOPPED),
    ("Reloaded ", ".", UNIT_RELOADED),
    ("Reload failed for ", ".", UNIT_RELOADED),
];

/// Unit lines: "unit: " and then these.
const UNIT_LINES: &[(&str, &str, &str)] = &[
    ("Main process exited, code=", "", UNIT_PROCESS_EXIT),
    ("Control process exited, code=", "", UNIT_PROCESS_EXIT),
    ("Failed with result '", "'.", UNIT_FAILURE_RESULT),
    ("Skipped due to '", "'.", UNIT_SKIPPED),
    ("Deactivated successfully.", "", UNIT_SUCCESS),
    (
        "Scheduled restart job, restart counter is at ",
        ".",
        UNIT_RESTART_SCHEDULED,
    ),
    ("Consumed ", " CPU time.", UNIT_RESOURCES),
];

/// The MESSAGE_ID systemd gives the manager line `message`, if any.
pub fn message_id(message: &[u8]) -> Option<&'static str> {
    let m = std::str::from_utf8(message).ok()?;
    let find = |table: &[(&str, &str, &'static str)], text: &str| {
        table
            .iter()
            .find(|(head, tail, _)| {
                text.len() >= head.len() + tail.len()
                    && text.starts_with(head)
                    && text.ends_with(tail)
            })
            .map(|(_, _, id)| *id)
    };
    // A unit line starts with the unit's name, which has no space, then ": ".
    if let Some((unit, rest)) = m.split_once(": ")
        && !unit.contains(' ')
        && unit.contains('.')
    {
        return find(UNIT_LINES, rest);
    }
    find(JOB_LINES, m)
}

/// The MESSAGE_ID of an entry, as 32 hex digits: the stored one, else (a manager line
/// of a store before v3) the one its wording shows.
pub fn entry_message_id(
    stream: super::Stream,
    stored: u128,
    message: &[u8],
) -> Option<std::borrow::Cow<'static, str>> {
    if stored != 0 {
        return Some(format!("{stored:032x}").into());
    }
    if stream != super::Stream::Manager {
        return None;
    }
    message_id(message).map(std::borrow::Cow::Borrowed)
}

/// A catalog id as the journal stores it.
pub fn id_number(id: &str) -> u128 {
    u128::from_str_radix(id, 16).unwrap_or(0)
}
