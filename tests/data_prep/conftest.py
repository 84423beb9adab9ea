"""Small, format-faithful MovieLens fixtures written by the tests themselves: zip archives with the real
member names, separators and encodings of each official layout, and RecBole atomic files."""
from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from data_prep.synth import SynthConfig, synth

# --- ML-100K: tab u.data, pipe u.item (24 fields, 19 flags), pipe u.user; latin-1 -------------------------
ML100K_DATA = "1\t1\t5\t874965758\n1\t2\t3\t876893171\n2\t1\t4\t888550871\n2\t3\t1\t888551000\n3\t4\t2\t889237455\n3\t5\t5\t889237460\n"
# flags: unknown Action Adventure Animation Children's Comedy Crime Documentary Drama Fantasy Film-Noir Horror
#        Musical Mystery Romance Sci-Fi Thriller War Western
ML100K_ITEM = (
    "1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
    "2|Misérables, Les (1995)|01-Jan-1995||http://us.imdb.com/x|0|0|0|0|0|0|0|0|1|0|0|0|1|0|0|0|0|0|0\n"
    "3|Shanghai Triad (Yao a yao yao dao waipo qiao) (1995)|01-Jan-1995||http://x|0|0|0|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0\n"
    "4|unknown||||1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
    "5|Hoop Dreams (1994)|01-Jan-1994||http://x|0|0|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0|0\n"
)
ML100K_USER = "1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|32067\n"
ML100K_GENRE = "unknown|0\nAction|1\nAdventure|2\n"

# --- ML-1M: '::' .dat files, latin-1, users with gender/age code/occupation code/zip -----------------------
ML1M_RATINGS = "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n2::3408::2::978299000\n"
ML1M_MOVIES = "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n3408::Erin Brockovich (2000)::Drama\n3409::Café au lait (1993)::Comedy\n"
ML1M_USERS = "1::F::1::10::48067\n2::M::56::16::70072\n"

# --- ML-10M: '::' .dat, half stars, no users, archive folder ml-10M100K --------------------------------------
ML10M_RATINGS = "1::122::5::838985046\n1::185::4.5::838983525\n2::122::0.5::868245777\n2::8606::3.5::868245920\n"
ML10M_MOVIES = "122::Boomerang (1992)::Comedy|Romance\n185::Net, The (1995)::Action|Crime|Thriller\n8606::Pull My Daisy (1958)::(no genres listed)\n"

# --- ML-20M/25M/32M/latest: CSV, quoted titles with commas, "" escapes, (no genres listed), half stars -----
CSV_RATINGS = "userId,movieId,rating,timestamp\n1,2,3.5,1112486027\n1,29,4.0,1112484676\n2,2,0.5,1112484819\n2,131,5.0,1112484727\n3,29,2.5,1094785740\n"
CSV_MOVIES = (
    "movieId,title,genres\n"
    "2,Jumanji (1995),Adventure|Children|Fantasy\n"
    '29,"City of Lost Children, The (Cité des enfants perdus, La) (1995)",Adventure|Drama|Fantasy|Mystery|Sci-Fi\n'
    '131,"Frankie Starlight ""Special"" Edition (1995)",Drama|Romance\n'
    "140,Up Close and Personal (1996),(no genres listed)\n"
)

ZIP_TIME = (1998, 4, 23, 0, 0, 0)
ARCHIVE_FOLDER = {"ml-100k": "ml-100k", "ml-1m": "ml-1m", "ml-10m": "ml-10M100K", "ml-20m": "ml-20m",
                  "ml-25m": "ml-25m", "ml-32m": "ml-32m", "ml-latest-small": "ml-latest-small"}


def official_members(dataset: str) -> dict[str, bytes]:
    """Base name → bytes of the files an official archive of `dataset` holds (in its encoding)."""
    if dataset == "ml-100k":
        return {"u.data": ML100K_DATA.encode("latin-1"), "u.item": ML100K_ITEM.encode("latin-1"),
                "u.user": ML100K_USER.encode("latin-1"), "u.genre": ML100K_GENRE.encode("latin-1"),
                "README": b"MovieLens 100K fixture\n"}
    if dataset == "ml-1m":
        return {"ratings.dat": ML1M_RATINGS.encode("latin-1"), "movies.dat": ML1M_MOVIES.encode("latin-1"),
                "users.dat": ML1M_USERS.encode("latin-1")}
    if dataset == "ml-10m":
        return {"ratings.dat": ML10M_RATINGS.encode(), "movies.dat": ML10M_MOVIES.encode(), "tags.dat": b""}
    return {"ratings.csv": CSV_RATINGS.encode(), "movies.csv": CSV_MOVIES.encode("utf-8"), "links.csv": b"movieId,imdbId,tmdbId\n"}


def write_zip(path: Path, folder: str, members: dict[str, bytes]) -> Path:
    """The same members always give the same bytes (and MD5): entries carry a fixed time, not the clock's."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo(f"{folder}/", ZIP_TIME), b"")
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(f"{folder}/{name}", ZIP_TIME), data, zipfile.ZIP_DEFLATED)
    return path


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def official_zip(tmp_path: Path) -> Callable[..., Path]:
    """official_zip("ml-1m", replace={"ratings.dat": b"…"}, drop=("users.dat",)) → path of `ml-1m.zip`."""

    def build(dataset: str, replace: dict[str, bytes] | None = None, drop: tuple[str, ...] = ()) -> Path:
        members = official_members(dataset) | (replace or {})
        members = {k: v for k, v in members.items() if k not in drop}
        folder = tmp_path / "downloads"
        folder.mkdir(exist_ok=True)
        return write_zip(folder / f"{dataset}.zip", ARCHIVE_FOLDER[dataset], members)

    return build


RECBOLE_INTER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t1\t5\t874965758\n1\t2\t3\t876893171\n2\t1\t4\t888550871\n2\t3\t1\t888551000\n"
RECBOLE_ITEM = ("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
                "1\tToy Story\t1995\tAnimation Children's Comedy\n2\tMisérables, Les\t1995\tDrama Musical\n"
                "3\tunkonwn\tunkonwn\tunknown\n")
RECBOLE_USER = "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n1\t24\tM\ttechnician\t85711\n2\t53\tF\tother\t94043\n"


@pytest.fixture
def recbole_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "recbole-ml-100k"
    folder.mkdir()
    for suffix, text in (("inter", RECBOLE_INTER), ("item", RECBOLE_ITEM), ("user", RECBOLE_USER)):
        (folder / f"ml-100k.{suffix}").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def fake_wheel(tmp_path: Path) -> Path:
    """A wheel laid out like recbole's, holding the RecBole fixture files."""
    wheel = tmp_path / "wheels" / "recbole-1.2.1-py3-none-any.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as archive:
        for suffix, text in (("inter", RECBOLE_INTER), ("item", RECBOLE_ITEM), ("user", RECBOLE_USER)):
            archive.writestr(f"recbole/dataset_example/ml-100k/ml-100k.{suffix}", text.encode("utf-8"))
    return wheel


SMALL = SynthConfig(ratings=20_000, users=300, items=200, genres=8, seed=0)


@pytest.fixture(scope="session")
def small_synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DATA_DIR holding `synth` (20k ratings, 300 users, 200 items, 8 genres), generated once per session."""
    root = tmp_path_factory.mktemp("synth-data")
    synth(SMALL, "synth", root)
    return root
