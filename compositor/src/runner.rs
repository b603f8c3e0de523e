//! The compositor process's core: job files in, jobs run, [`CompositorEvent`]s out.
//!
//! Control writes one [`CompositorJob`] per file in the jobs directory and deletes the file to
//! stop the job (`schema::compositor`). [`Runner::scan`] compares the directory with the jobs
//! running: a new file starts a job (a [`Composite`] and a live [`TapFeed`]), a removed one
//! finishes it (the outputs are closed, each MP4 part reported). A cue file
//! (`<job_id>.cue.<n>.json`, a [`Cue`]) becomes timed metadata in the job's HLS playlists and
//! is deleted. Tap records are routed to the job whose tap number they carry; records of no
//! job are counted and dropped. [`Runner::check`] reports what changed in the running jobs:
//! a pipeline error, the first HLS segment, an RTMP destination connecting or failing.
//!
//! A job whose start fails (a bad spec, an unwritable directory) is reported once and not
//! retried until its file changes. A job whose pipeline fails mid-way is reported, its outputs
//! closed as far as they can be, and likewise not retried.
//!
//! Restarts: the files stay while control wants the jobs, so a restarted compositor starts
//! each again; MP4 parts continue the numbering of the parts already in the job's directory
//! (`composite.<n>.mp4`), so nothing written before is overwritten, and the parts already
//! there are reported again (a killed process could not report its last one; control's
//! store takes a repeated report as the same asset).
//!
//! Time is an argument (`now_ms`, Unix milliseconds) for the records; GStreamer keeps its own
//! clock for the pipelines.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Duration;

use schema::compositor::{CompositorEvent, CompositorJob, Cue, JobLayout, OutputFile, PlaylistType};
use schema::tap::TapRecord;
use tracing::{debug, info, warn};

use crate::config::{Config, HlsOutput, HlsPlaylist, Mp4Output, Rendition};
use crate::layout::LayoutKind;
use crate::pipeline::Composite;
use crate::tap_feed::TapFeed;

/// The MP4 parts' file name prefix in a job's directory: `composite.<n>.mp4`.
pub const MP4_PREFIX: &str = "composite";

/// How long a finishing job may take to close its outputs.
pub const FINISH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Job {
    spec: CompositorJob,
    composite: Composite,
    feed: TapFeed,
    /// The first MP4 part of this run (earlier runs' parts are not ours to report).
    first_part: u32,
    /// Whether `HlsReady` was reported.
    hls_ready: bool,
    /// Each RTMP destination's last reported state: connected, and the error.
    rtmp: HashMap<String, (bool, Option<String>)>,
}

/// Counters, for logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunnerStats {
    pub records: u64,
    pub bad_records: u64,
    /// Records whose tap belongs to no running job (a job just stopped, or one that failed).
    pub records_no_job: u64,
    pub jobs_started: u64,
    pub jobs_failed: u64,
}

/// The jobs of one compositor process. See the module docs.
#[derive(Debug)]
pub struct Runner {
    jobs_dir: PathBuf,
    jobs: HashMap<String, Job>,
    by_tap: HashMap<u32, String>,
    /// Jobs that failed, with the spec that failed: retried only when their file changes.
    failed: HashMap<String, CompositorJob>,
    /// Job files that do not parse, already reported.
    unreadable: std::collections::HashSet<String>,
    events: VecDeque<CompositorEvent>,
    stats: RunnerStats,
}

impl Runner {
    pub fn new(jobs_dir: impl Into<PathBuf>) -> Runner {
        Runner {
            jobs_dir: jobs_dir.into(),
            jobs: HashMap::new(),
            by_tap: HashMap::new(),
            failed: HashMap::new(),
            unreadable: Default::default(),
            events: VecDeque::new(),
            stats: RunnerStats::default(),
        }
    }

    pub fn stats(&self) -> RunnerStats {
        self.stats
    }

    pub fn job_count(&self) -> usize {
        self.jobs.len()
    }

    pub fn poll_event(&mut self) -> Option<CompositorEvent> {
        self.events.pop_front()
    }

    /// Starts the jobs whose files appeared and finishes those whose files are gone.
    pub fn scan(&mut self) {
        let (wanted, unreadable, cues) = read_jobs(&self.jobs_dir);
        for (id, reason) in &unreadable {
            if self.unreadable.insert(id.clone()) {
                warn!(job = %id, %reason, "unreadable job file");
                self.events.push_back(CompositorEvent::Failed { job_id: id.clone(), reason: reason.clone() });
            }
        }
        self.unreadable.retain(|id| unreadable.iter().any(|(u, _)| u == id));
        let gone: Vec<String> = self.jobs.keys().filter(|id| !wanted.contains_key(*id)).cloned().collect();
        for id in gone {
            self.finish(&id);
        }
        self.failed.retain(|id, spec| wanted.get(id) == Some(spec));
        for (id, spec) in wanted {
            if let Some(job) = self.jobs.get_mut(&id) {
                // A running job follows its file's pause flag; other changes wait for a restart.
                if job.spec.paused != spec.paused {
                    match job.composite.set_recording_paused(spec.paused) {
                        Ok(()) => info!(job = %id, paused = spec.paused, "recording paused or resumed"),
                        Err(e) => warn!(job = %id, error = %e, "cannot pause"),
                    }
                    job.spec.paused = spec.paused;
                }
                continue;
            }
            if self.failed.contains_key(&id) {
                continue;
            }
            if let Some(other) = self.by_tap.get(&spec.tap) {
                let reason = format!("tap {} is already job {other}'s", spec.tap);
                self.fail_start(spec, reason);
                continue;
            }
            match start(&spec) {
                Ok(job) => {
                    info!(job = %id, tap = spec.tap, room = %spec.room_id, "job started");
                    self.stats.jobs_started += 1;
                    self.by_tap.insert(spec.tap, id.clone());
                    self.jobs.insert(id.clone(), job);
                    self.events.push_back(CompositorEvent::Started { job_id: id.clone() });
                    // Parts an earlier process left (killed before it could report them): their
                    // length is from the file's birth to its last write.
                    if let Some(mp4) = &spec.mp4 {
                        for (n, path) in parts_in(Path::new(&mp4.dir), 1) {
                            if n >= job_first_part(&self.jobs, &id) {
                                break;
                            }
                            let meta = std::fs::metadata(&path).ok();
                            let duration = meta
                                .as_ref()
                                .and_then(|m| m.modified().ok()?.duration_since(m.created().ok()?).ok())
                                .unwrap_or_default();
                            let file = OutputFile {
                                path: path.to_string_lossy().into_owned(),
                                size: meta.map_or(0, |m| m.len()),
                                duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
                                width: spec.width,
                                height: spec.height,
                            };
                            self.events.push_back(CompositorEvent::FileClosed { job_id: id.clone(), file });
                        }
                    }
                }
                Err(reason) => self.fail_start(spec, reason),
            }
        }
        self.apply_cues(cues);
    }

    /// Applies and deletes cue files; a cue for a job that is not running (or has no HLS) is
    /// dropped with a warning.
    fn apply_cues(&mut self, cues: Vec<(String, PathBuf)>) {
        for (id, path) in cues {
            let cue = std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str::<Cue>(&t).map_err(|e| e.to_string()));
            let applied = match (cue, self.jobs.get_mut(&id)) {
                (Ok(cue), Some(job)) => job
                    .composite
                    .add_timed_metadata(&cue.payload, Duration::from_secs(u64::from(cue.duration_seconds)))
                    .map_err(|e| e.to_string()),
                (Ok(_), None) => Err("the job is not running".into()),
                (Err(e), _) => Err(format!("unreadable cue: {e}")),
            };
            if let Err(e) = applied {
                warn!(job = %id, file = %path.display(), error = %e, "timed metadata dropped");
            }
            let _ = std::fs::remove_file(&path);
        }
    }

    fn fail_start(&mut self, spec: CompositorJob, reason: String) {
        warn!(job = %spec.job_id, %reason, "job cannot start");
        self.stats.jobs_failed += 1;
        self.events.push_back(CompositorEvent::Failed { job_id: spec.job_id.clone(), reason });
        self.failed.insert(spec.job_id.clone(), spec);
    }

    /// One encoded tap record, received at `now_ms`.
    pub fn handle_record(&mut self, now_ms: u64, record: &[u8]) {
        self.stats.records += 1;
        let tap = match TapRecord::decode(record) {
            Ok(
                TapRecord::Start { tap, .. }
                | TapRecord::Rtp { tap, .. }
                | TapRecord::SenderReport { tap, .. }
                | TapRecord::Stop { tap, .. },
            ) => tap,
            Err(e) => {
                self.stats.bad_records += 1;
                debug!(error = %e, "unreadable tap record");
                return;
            }
        };
        let Some(job) = self.by_tap.get(&tap).and_then(|id| self.jobs.get_mut(id)) else {
            self.stats.records_no_job += 1;
            return;
        };
        if let Err(e) = job.feed.handle_record(now_ms, record, &mut job.composite) {
            // A refused frame or input costs that frame, not the job; a pipeline failure shows
            // in `check`.
            debug!(job = %job.spec.job_id, error = %e, "frame refused");
        }
        for meta in job.feed.take_keyframes_wanted() {
            self.events.push_back(CompositorEvent::KeyframeWanted { meta });
        }
    }

    /// Reports what changed in the running jobs, and fails those whose pipelines broke.
    pub fn check(&mut self) {
        for (id, job) in &mut self.jobs {
            if !job.hls_ready
                && let Some(hls) = &job.spec.hls
                && std::fs::read_to_string(Path::new(&hls.dir).join("0").join("index.m3u8"))
                    .is_ok_and(|p| p.contains("#EXTINF"))
            {
                job.hls_ready = true;
                self.events.push_back(CompositorEvent::HlsReady { job_id: id.clone() });
            }
            for s in job.composite.rtmp_states() {
                let now = (s.connected, s.last_error.clone());
                if job.rtmp.get(&s.url) != Some(&now) {
                    if s.connected || s.last_error.is_some() {
                        self.events.push_back(CompositorEvent::Rtmp {
                            job_id: id.clone(),
                            url: s.url.clone(),
                            connected: s.connected,
                            error: if s.connected { None } else { s.last_error.clone() },
                        });
                    }
                    job.rtmp.insert(s.url, now);
                }
            }
        }
        let broken: Vec<(String, String)> = self
            .jobs
            .iter_mut()
            .filter_map(|(id, j)| j.composite.poll().map(|e| (id.clone(), e.to_string())))
            .collect();
        for (id, reason) in broken {
            warn!(job = %id, %reason, "job failed");
            self.stats.jobs_failed += 1;
            if let Some(job) = self.remove(&id) {
                self.events.push_back(CompositorEvent::Failed { job_id: id.clone(), reason });
                self.failed.insert(id.clone(), job.spec.clone());
                self.close(now_ms_hint(), job);
            }
        }
    }

    /// Closes every job's outputs (the process is stopping; the job files stay, so the next
    /// process goes on with new parts).
    pub fn finish_all(&mut self) {
        let ids: Vec<String> = self.jobs.keys().cloned().collect();
        for id in ids {
            if let Some(job) = self.remove(&id) {
                self.close(now_ms_hint(), job);
            }
        }
    }

    fn remove(&mut self, id: &str) -> Option<Job> {
        let job = self.jobs.remove(id)?;
        self.by_tap.remove(&job.spec.tap);
        Some(job)
    }

    fn finish(&mut self, id: &str) {
        if let Some(job) = self.remove(id) {
            info!(job = %id, "job stopping");
            let spec = job.spec.clone();
            self.close(now_ms_hint(), job);
            if let Some(hls) = spec.hls.as_ref().filter(|h| h.vod) {
                match write_vod_master(Path::new(&hls.dir)) {
                    Ok((path, size, total)) => {
                        let file = OutputFile {
                            path: path.to_string_lossy().into_owned(),
                            size,
                            duration_ms: u64::try_from(total.as_millis()).unwrap_or(u64::MAX),
                            width: spec.width,
                            height: spec.height,
                        };
                        self.events.push_back(CompositorEvent::FileClosed { job_id: id.to_owned(), file });
                    }
                    Err(e) => warn!(job = %id, error = %e, "no VOD playlist"),
                }
            }
            self.events.push_back(CompositorEvent::Finished { job_id: id.to_owned() });
        }
    }

    /// Pushes what a job's inputs hold, closes its outputs and reports its MP4 parts.
    fn close(&mut self, now_ms: u64, mut job: Job) {
        let id = job.spec.job_id.clone();
        // The inputs stay for `finish` to end together (see `TapFeed::flush_all`).
        if let Err(e) = job.feed.flush_all(now_ms, &mut job.composite) {
            debug!(job = %id, error = %e, "pushing the inputs' last frames");
        }
        // What the MP4 holds: the time run less the time paused.
        let total =
            job.composite.running_time().unwrap_or_default().saturating_sub(job.composite.recording_paused_for());
        let part = job.composite.config().mp4.as_ref().map_or(Duration::MAX, |m| m.part_duration);
        if let Err(e) = job.composite.finish(FINISH_TIMEOUT) {
            warn!(job = %id, error = %e, "outputs not closed cleanly (what was written is kept)");
        }
        let Some(mp4) = &job.spec.mp4 else { return };
        let parts = parts_in(Path::new(&mp4.dir), job.first_part);
        let count = parts.len();
        for (i, (_, path)) in parts.into_iter().enumerate() {
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            // Parts rotate at `part` (at a keyframe, so close to it); the last holds the rest.
            let before = part.saturating_mul(u32::try_from(i).unwrap_or(u32::MAX));
            let duration = if i + 1 == count { total.saturating_sub(before) } else { part };
            let file = OutputFile {
                path: path.to_string_lossy().into_owned(),
                size,
                duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
                width: job.spec.width,
                height: job.spec.height,
            };
            self.events.push_back(CompositorEvent::FileClosed { job_id: id.clone(), file });
        }
    }
}

/// The VOD of an HLS output: `<dir>/vod.m3u8`, the multivariant playlist naming each
/// rendition's `vod.m3u8`. Returns its path, the size of the whole output (playlists and
/// segments) and the duration the VOD lists (every run's segments, less what was paused).
fn write_vod_master(dir: &Path) -> std::io::Result<(PathBuf, u64, Duration)> {
    let master = std::fs::read_to_string(dir.join("master.m3u8"))?;
    let vod: String = master.lines().map(|l| l.replace("/index.m3u8", "/vod.m3u8") + "\n").collect();
    let path = dir.join("vod.m3u8");
    let tmp = dir.join(".vod.m3u8.tmp");
    std::fs::write(&tmp, vod)?;
    std::fs::rename(&tmp, &path)?;
    let mut size = 0;
    for entry in std::fs::read_dir(dir)?.filter_map(Result::ok) {
        let meta = entry.metadata()?;
        if meta.is_dir() {
            for inner in std::fs::read_dir(entry.path())?.filter_map(Result::ok) {
                size += inner.metadata().map(|m| m.len()).unwrap_or(0);
            }
        } else {
            size += meta.len();
        }
    }
    let listed = std::fs::read_to_string(dir.join("0").join("vod.m3u8"))?;
    let duration = crate::outputs::playlist::parse_media(&listed).iter().map(|s| s.duration).sum();
    Ok((path, size, duration))
}

fn job_first_part(jobs: &HashMap<String, Job>, id: &str) -> u32 {
    jobs.get(id).map_or(1, |j| j.first_part)
}

/// The wall clock for records' `now_ms` at a stop: only used to place frames still held.
fn now_ms_hint() -> u64 {
    util::unix_ms()
}

/// Builds a job's pipeline from its spec.
fn start(spec: &CompositorJob) -> Result<Job, String> {
    let layout = match spec.layout {
        JobLayout::Grid => LayoutKind::Grid,
        JobLayout::ActiveSpeaker => LayoutKind::Speaker,
    };
    let mut config =
        Config { width: spec.width, height: spec.height, rtmp: spec.rtmp.clone(), layout, ..Config::default() };
    let mut first_part = 1;
    if let Some(mp4) = &spec.mp4 {
        if mp4.part_seconds == 0 {
            return Err("mp4.part_seconds must be at least 1".into());
        }
        let dir = PathBuf::from(&mp4.dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        first_part = parts_in(&dir, 1).last().map_or(1, |(n, _)| n + 1);
        let mut out = Mp4Output::new(&dir, MP4_PREFIX);
        out.start_index = first_part;
        out.part_duration = Duration::from_secs(mp4.part_seconds);
        config.mp4 = Some(out);
    }
    if let Some(hls) = &spec.hls {
        let renditions: Vec<Rendition> = hls
            .renditions
            .iter()
            .map(|r| Rendition { width: r.width, height: r.height, video_kbps: r.video_kbps })
            .collect();
        // The first rendition is the job's own encode.
        if let Some(top) = renditions.first() {
            config.video_bitrate_kbps = top.video_kbps;
        }
        let mut out = HlsOutput::new(&hls.dir, renditions);
        out.segment_duration = Duration::from_secs(u64::from(hls.segment_seconds));
        out.playlist = match hls.playlist_type {
            PlaylistType::Live => HlsPlaylist::Live { segments: hls.playlist_segments },
            PlaylistType::Event => HlsPlaylist::Event,
        };
        out.vod = hls.vod;
        config.hls = Some(out);
    }
    let mut composite = Composite::start(config).map_err(|e| e.to_string())?;
    if spec.paused && (spec.mp4.is_some() || spec.hls.as_ref().is_some_and(|h| h.vod)) {
        composite.set_recording_paused(true).map_err(|e| e.to_string())?;
    }
    Ok(Job { spec: spec.clone(), composite, feed: TapFeed::live(), first_part, hls_ready: false, rtmp: HashMap::new() })
}

/// The MP4 parts `composite.<n>.mp4` in `dir` with `n >= from`, by number.
pub fn parts_in(dir: &Path, from: u32) -> Vec<(u32, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut parts: Vec<(u32, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n = name.strip_prefix(MP4_PREFIX)?.strip_prefix('.')?.strip_suffix(".mp4")?.parse::<u32>().ok()?;
            (n >= from).then(|| (n, e.path()))
        })
        .collect();
    parts.sort();
    parts
}

/// What the jobs directory holds.
type DirContents = (HashMap<String, CompositorJob>, Vec<(String, String)>, Vec<(String, PathBuf)>);

/// The job files of the directory, by job id; the files that do not parse (the job id their
/// name gives, and why); and the cue files (their job id and path), oldest first.
fn read_jobs(dir: &Path) -> DirContents {
    let (mut jobs, mut unreadable, mut cues) = (HashMap::new(), Vec::new(), Vec::new());
    let Ok(entries) = std::fs::read_dir(dir) else { return (jobs, unreadable, Vec::new()) };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue; // control's temporary files while it writes one
        }
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else { continue };
        if let Some((job, n)) = stem.split_once(".cue.") {
            cues.push((n.parse::<u64>().unwrap_or(0), job.to_owned(), path));
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        match serde_json::from_str::<CompositorJob>(&text) {
            Ok(job) if job.job_id == stem => {
                jobs.insert(stem, job);
            }
            Ok(job) => warn!(file = %path.display(), job = %job.job_id, "job file named after another job; ignored"),
            Err(e) => unreadable.push((stem, format!("unreadable job file: {e}"))),
        }
    }
    cues.sort();
    (jobs, unreadable, cues.into_iter().map(|(_, job, path)| (job, path)).collect())
}
