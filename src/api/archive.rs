//! JSON routes of the archive: categories, records, the physical register and files.

use futures_util::TryStreamExt;
use rocket::data::{Data, ToByteUnit};
use rocket::http::{ContentType, Status};
use rocket::serde::json::Json;
use rocket::{get, patch, post, routes, Route, State};
use tokio_util::io::{ReaderStream, StreamReader};

use super::{body, Body};
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::http::id;
use crate::records::model::{
    Category, CategoryChanges, CategoryId, FileInfo, NewCategory, NewRecord, RecordChanges,
    RecordId, RecordView, Revision,
};
use crate::records::register::{
    self, BoxEntry, Contents, Level, Move, MoveEntry, NewEntry, NewPlace, Place, Rename,
    StoreroomNode,
};
use crate::records::search::{self, SearchPage, SearchQuery};
use crate::records::{self, categories, files, review};
use crate::App;

pub fn routes() -> Vec<Route> {
    routes![
        list_categories,
        create_category,
        get_category,
        update_category,
        create_record,
        search_records,
        get_record,
        update_record,
        record_revisions,
        move_record,
        record_moves,
        list_register,
        create_place,
        register_tree,
        register_csv,
        create_storeroom,
        create_shelf,
        create_box,
        rename_storeroom,
        rename_shelf,
        rename_box,
        storeroom_contents,
        shelf_contents,
        box_contents,
        upload_file,
        list_files,
        list_proposals,
        withdraw_proposal,
        approve_proposal,
        reject_proposal,
    ]
}

#[get("/categories")]
async fn list_categories(app: &State<App>, who: Principal) -> AppResult<Json<Vec<Category>>> {
    Ok(Json(categories::list(app, &who).await?))
}

#[post("/categories", data = "<b>")]
async fn create_category(
    app: &State<App>,
    who: Principal,
    b: Body<serde_json::Value>,
) -> AppResult<(Status, Json<Category>)> {
    let (new, declared) = declared_body::<NewCategory>(body(b)?)?;
    Ok((
        Status::Created,
        Json(categories::create_declared(app, &who, new, &declared).await?),
    ))
}

/// A category body with what it says about each field's sensitivity taken apart (privacy
/// by default: a field that looks personal and says nothing is sensitive).
fn declared_body<T: serde::de::DeserializeOwned>(
    mut v: serde_json::Value,
) -> AppResult<(T, Vec<crate::records::privacy::Declared>)> {
    let declared = crate::records::privacy::declared_in_json(&mut v)?.unwrap_or_default();
    let parsed = serde_json::from_value(v).map_err(|e| crate::error::AppError::Invalid {
        field: None,
        message: format!("invalid JSON body: {e}"),
    })?;
    Ok((parsed, declared))
}

#[get("/categories/<id>")]
async fn get_category(
    app: &State<App>,
    who: Principal,
    id: CategoryId,
) -> AppResult<Json<Category>> {
    Ok(Json(categories::get_for(app, &who, id).await?))
}

#[patch("/categories/<id>", data = "<b>")]
async fn update_category(
    app: &State<App>,
    who: Principal,
    id: CategoryId,
    b: Body<serde_json::Value>,
) -> AppResult<Json<Category>> {
    let (changes, declared) = declared_body::<CategoryChanges>(body(b)?)?;
    Ok(Json(
        categories::update_declared(app, &who, id, changes, &declared).await?,
    ))
}

#[post("/records", data = "<b>")]
async fn create_record(
    app: &State<App>,
    who: Principal,
    b: Body<NewRecord>,
) -> AppResult<(Status, Json<serde_json::Value>)> {
    filed(records::create(app, &who, body(b)?).await?, Status::Created)
}

/// A change that took effect (`now` with the record) or waits for review (202 Accepted
/// with `{"proposal": …}`).
fn filed(f: records::Filed, now: Status) -> AppResult<(Status, Json<serde_json::Value>)> {
    Ok(match f {
        records::Filed::Now(r) => (now, Json(to_value(&r)?)),
        records::Filed::Proposed(p) => (
            Status::Accepted,
            Json(serde_json::json!({ "proposal": to_value(&p)? })),
        ),
    })
}

fn to_value(v: &impl serde::Serialize) -> AppResult<serde_json::Value> {
    serde_json::to_value(v).map_err(AppError::internal)
}

/// Proposals waiting for review (or `state=approved|rejected`) that the caller may review,
/// and the caller's own.
#[get("/proposals?<state>")]
async fn list_proposals(
    app: &State<App>,
    who: Principal,
    state: Option<&str>,
) -> AppResult<Json<Vec<review::Proposal>>> {
    Ok(Json(review::list(app, &who, state).await?))
}

#[post("/proposals/<pid>/approve", data = "<b>")]
async fn approve_proposal(
    app: &State<App>,
    who: Principal,
    pid: &str,
    b: Body<review::Decision>,
) -> AppResult<Json<review::Proposal>> {
    Ok(Json(review::approve(app, &who, id(pid)?, body(b)?).await?))
}

#[post("/proposals/<pid>/reject", data = "<b>")]
async fn reject_proposal(
    app: &State<App>,
    who: Principal,
    pid: &str,
    b: Body<review::Decision>,
) -> AppResult<Json<review::Proposal>> {
    Ok(Json(review::reject(app, &who, id(pid)?, body(b)?).await?))
}

/// The proposer withdraws their own proposal while it waits.
#[post("/proposals/<pid>/withdraw")]
async fn withdraw_proposal(
    app: &State<App>,
    who: Principal,
    pid: &str,
) -> AppResult<Json<review::Proposal>> {
    Ok(Json(review::withdraw(app, &who, id(pid)?).await?))
}

#[get("/records?<query..>")]
async fn search_records(
    app: &State<App>,
    who: Principal,
    query: SearchQuery,
) -> AppResult<Json<SearchPage>> {
    Ok(Json(search::search(app, &who, query).await?))
}

#[get("/records/<id>")]
async fn get_record(app: &State<App>, who: Principal, id: RecordId) -> AppResult<Json<RecordView>> {
    Ok(Json(records::get(app, &who, id).await?))
}

#[patch("/records/<id>", data = "<b>")]
async fn update_record(
    app: &State<App>,
    who: Principal,
    id: RecordId,
    b: Body<RecordChanges>,
) -> AppResult<(Status, Json<serde_json::Value>)> {
    filed(records::update(app, &who, id, body(b)?).await?, Status::Ok)
}

#[get("/records/<id>/revisions")]
async fn record_revisions(
    app: &State<App>,
    who: Principal,
    id: RecordId,
) -> AppResult<Json<Vec<Revision>>> {
    Ok(Json(records::revisions(app, &who, id).await?))
}

#[post("/records/<id>/physical", data = "<b>")]
async fn move_record(
    app: &State<App>,
    who: Principal,
    id: RecordId,
    b: Body<Move>,
) -> AppResult<Json<RecordView>> {
    register::move_file(app, &who, id, body(b)?).await?;
    Ok(Json(records::get(app, &who, id).await?))
}

#[get("/records/<id>/physical/moves")]
async fn record_moves(
    app: &State<App>,
    who: Principal,
    id: RecordId,
) -> AppResult<Json<Vec<MoveEntry>>> {
    Ok(Json(register::moves(app, &who, id).await?))
}

#[get("/register")]
async fn list_register(app: &State<App>, who: Principal) -> AppResult<Json<Vec<BoxEntry>>> {
    Ok(Json(register::list(app, &who).await?))
}

#[post("/register", data = "<b>")]
async fn create_place(
    app: &State<App>,
    who: Principal,
    b: Body<NewPlace>,
) -> AppResult<(Status, Json<Vec<BoxEntry>>)> {
    Ok((
        Status::Created,
        Json(register::create_place(app, &who, body(b)?).await?),
    ))
}

#[get("/register/storerooms")]
async fn register_tree(app: &State<App>, who: Principal) -> AppResult<Json<Vec<StoreroomNode>>> {
    Ok(Json(register::tree(app, &who).await?))
}

/// The register listing as CSV (UTF-8 with a byte-order mark).
#[get("/register.csv")]
async fn register_csv(app: &State<App>, who: Principal) -> AppResult<(ContentType, String)> {
    Ok((ContentType::CSV, register::csv(app, &who).await?))
}

#[post("/register/storerooms", data = "<b>")]
async fn create_storeroom(
    app: &State<App>,
    who: Principal,
    b: Body<NewEntry>,
) -> AppResult<(Status, Json<Place>)> {
    let p = register::create_storeroom(app, &who, body(b)?).await?;
    Ok((Status::Created, Json(p)))
}

#[post("/register/storerooms/<sid>/shelves", data = "<b>")]
async fn create_shelf(
    app: &State<App>,
    who: Principal,
    sid: &str,
    b: Body<NewEntry>,
) -> AppResult<(Status, Json<Place>)> {
    let p = register::create_shelf(app, &who, id(sid)?, body(b)?).await?;
    Ok((Status::Created, Json(p)))
}

#[post("/register/shelves/<sid>/boxes", data = "<b>")]
async fn create_box(
    app: &State<App>,
    who: Principal,
    sid: &str,
    b: Body<NewEntry>,
) -> AppResult<(Status, Json<Place>)> {
    let p = register::create_box(app, &who, id(sid)?, body(b)?).await?;
    Ok((Status::Created, Json(p)))
}

#[patch("/register/storerooms/<pid>", data = "<b>")]
async fn rename_storeroom(
    app: &State<App>,
    who: Principal,
    pid: &str,
    b: Body<Rename>,
) -> AppResult<Json<Place>> {
    let r = body(b)?;
    Ok(Json(
        register::rename(app, &who, Level::Storeroom, id(pid)?, r).await?,
    ))
}

#[patch("/register/shelves/<pid>", data = "<b>")]
async fn rename_shelf(
    app: &State<App>,
    who: Principal,
    pid: &str,
    b: Body<Rename>,
) -> AppResult<Json<Place>> {
    let r = body(b)?;
    Ok(Json(
        register::rename(app, &who, Level::Shelf, id(pid)?, r).await?,
    ))
}

#[patch("/register/boxes/<pid>", data = "<b>")]
async fn rename_box(
    app: &State<App>,
    who: Principal,
    pid: &str,
    b: Body<Rename>,
) -> AppResult<Json<Place>> {
    let r = body(b)?;
    Ok(Json(
        register::rename(app, &who, Level::Box, id(pid)?, r).await?,
    ))
}

#[get("/register/storerooms/<pid>/contents?<page>")]
async fn storeroom_contents(
    app: &State<App>,
    who: Principal,
    pid: &str,
    page: Option<i64>,
) -> AppResult<Json<Contents>> {
    let c = register::contents(app, &who, Level::Storeroom, id(pid)?, page).await?;
    Ok(Json(c))
}

#[get("/register/shelves/<pid>/contents?<page>")]
async fn shelf_contents(
    app: &State<App>,
    who: Principal,
    pid: &str,
    page: Option<i64>,
) -> AppResult<Json<Contents>> {
    let c = register::contents(app, &who, Level::Shelf, id(pid)?, page).await?;
    Ok(Json(c))
}

#[get("/register/boxes/<pid>/contents?<page>")]
async fn box_contents(
    app: &State<App>,
    who: Principal,
    pid: &str,
    page: Option<i64>,
) -> AppResult<Json<Contents>> {
    let c = register::contents(app, &who, Level::Box, id(pid)?, page).await?;
    Ok(Json(c))
}

/// Streams the `file` part of a multipart upload straight into the encrypting writer:
/// the plaintext is never held whole in memory nor written to disk.
#[post("/records/<id>/files", data = "<data>")]
async fn upload_file(
    app: &State<App>,
    who: Principal,
    id: RecordId,
    ct: Option<&ContentType>,
    csrf: crate::auth::csrf::HeaderToken,
    data: Data<'_>,
) -> AppResult<(Status, Json<FileInfo>)> {
    csrf.verify(app, &who).await?;
    let boundary = ct
        .filter(|c| c.is_form_data())
        .and_then(|c| {
            c.params()
                .find(|(k, _)| k.as_str().eq_ignore_ascii_case("boundary"))
                .map(|(_, v)| v.to_string())
        })
        .ok_or_else(|| {
            AppError::invalid(
                "file",
                "send the file as multipart/form-data in a part named `file`",
            )
        })?;
    // Room for the multipart framing around the largest file allowed.
    let limit = app.config.max_upload_bytes.saturating_add(1 << 20);
    // 64 KiB reads (the default is 4 KiB): a sixteenth of the trips through the multipart
    // parser per byte, and the size of one encryption chunk.
    let stream = ReaderStream::with_capacity(data.open(limit.bytes()), 64 * 1024);
    let mut parts = multer::Multipart::new(super::paced::OnePerPoll::new(stream), boundary);
    loop {
        let field = parts
            .next_field()
            .await
            .map_err(|e| AppError::invalid("file", format!("malformed multipart body: {e}")))?
            .ok_or_else(|| AppError::invalid("file", "no part named `file` in the upload"))?;
        if field.name() != Some("file") {
            continue;
        }
        let name = field.file_name().unwrap_or("file").to_string();
        let media_type = field.content_type().map(|m| m.to_string());
        let reader = StreamReader::new(Box::pin(field.map_err(std::io::Error::other)));
        let info = files::upload(app, &who, id, &name, media_type.as_deref(), reader).await?;
        return Ok((Status::Created, Json(info)));
    }
}

#[get("/records/<id>/files")]
async fn list_files(
    app: &State<App>,
    who: Principal,
    id: RecordId,
) -> AppResult<Json<Vec<FileInfo>>> {
    Ok(Json(files::list(app, &who, id).await?))
}
