"""The files and schemas AWS's sample notebooks (aws-samples/amazon-personalize-samples) hand to
Personalize, through unchanged boto3: Personalize imported them, so they must import here.

A few invalid rows are skipped and reported (POC_in_a_box 02's item metadata: 12 movies without
a year in their title and one `2006–2007`); a mostly bad file still fails. pandas' index column
is ignored, header names match in any case, and a union of one type is a schema field's type.
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import DATASETS, Server
from test_datasets import Dataset, f, read_csv, schema

MOVIES = DATASETS / "ml-latest-small" / "original" / "movies.csv"
POC_ITEMS = schema(f("ITEM_ID"), f("GENRE", categorical=True), f("YEAR", "int"), name="Items")


@pytest.fixture
def server(embedded_server: Server) -> Server:
    if not MOVIES.is_file():
        pytest.fail(f"the shared datasets are missing: expected {MOVIES}")
    return embedded_server


def raw_import_job(server: Server, arn: str) -> dict[str, Any]:
    """DescribeDatasetImportJob's whole body, with the members boto3's model drops (progress)."""
    r = httpx.post(server.url + "/", content=json.dumps({"datasetImportJobArn": arn}), headers={
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "AmazonPersonalize.DescribeDatasetImportJob"}, timeout=10)
    return r.json()["datasetImportJob"]


def poc_item_metadata(path: Path) -> Path:
    """POC_in_a_box 02's item-meta.csv, made as its notebook makes it (the year is what pandas'
    `title.str.extract('.*\\((.*)\\).*')` finds: nothing for 12 titles)."""
    with open(MOVIES, newline="", encoding="utf-8") as src:
        movies = list(csv.DictReader(src))
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["ITEM_ID", "GENRE", "YEAR"])
        for movie in movies:
            year = re.search(r".*\((.*)\).*", movie["title"])
            writer.writerow([movie["movieId"], movie["genres"], year.group(1) if year else ""])
    return path


def exported_ids(items: Dataset, to: Path, job: str) -> set[str]:
    return {r["ITEM_ID"] for r in read_csv(items.export(to, job) / "part-00000.csv")}


def test_poc_02s_item_metadata_imports_skipping_and_reporting_its_13_invalid_rows(
        server: Server, tmp_path: Path) -> None:
    control = server.client("personalize")
    control.create_dataset_group(name="poc")
    items = Dataset(control, "poc", "ITEMS", POC_ITEMS)
    job = items.import_(poc_item_metadata(tmp_path / "item-meta.csv"), "personalize-poc-item-import1")
    assert job["status"] == "ACTIVE", job.get("failureReason")
    assert "failureReason" not in job

    body = raw_import_job(server, job["datasetImportJobArn"])
    assert body["progress"]["rowsDone"] == 9_729 and body["progress"]["rowsSkipped"] == 13
    message = body["progress"]["message"]
    assert message == ("Imported 9,729 of 9,742 rows; skipped 13 invalid row(s) (0.13%): YEAR is empty but "
                       "the field is required: 12; YEAR is not an int: 1. The first is row 6060 (line 6061 "
                       "of item-meta.csv), column YEAR: is empty but the field is required.")  # Babylon 5
    assert message in server.output(tail=None)  # the server's log says it too

    ids = exported_ids(items, tmp_path / "out", "items")
    assert len(ids) == 9_729 and "1" in ids
    assert not ids & {"149334", "171749"}  # "Nocturnal Animals", "Death Note: Desu nôto (2006–2007)"


def test_a_mostly_invalid_file_fails_naming_the_first_bad_row_and_the_counts(
        server: Server, tmp_path: Path) -> None:
    control = server.client("personalize")
    control.create_dataset_group(name="mostly-bad")
    items = Dataset(control, "mostly-bad", "ITEMS", POC_ITEMS)
    (tmp_path / "good.csv").write_text("ITEM_ID,GENRE,YEAR\ni1,Comedy,1995\n")
    assert items.import_(tmp_path / "good.csv", "good")["status"] == "ACTIVE"
    lines = ["ITEM_ID,GENRE,YEAR"] + [f"i{n},Drama,{'' if n % 3 else 2000}" for n in range(2, 32)]
    lines[5] = "i6,Drama"  # 20 rows with no YEAR, one short, 9 good
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    job = items.import_(tmp_path / "bad.csv", "mostly-bad", "INCREMENTAL")
    assert job["status"] == "CREATE FAILED"
    assert job["failureReason"] == (
        "21 of 30 rows are invalid (70.0%), more than the 10% an import may skip: YEAR is empty but the "
        "field is required: 20; the wrong number of fields: 1. The first is row 1 (line 2 of bad.csv), "
        "column YEAR: is empty but the field is required. Nothing was imported.")
    listed = control.list_dataset_import_jobs(datasetArn=items.arn)["datasetImportJobs"]
    assert {j["jobName"]: j["status"] for j in listed} == {"good": "ACTIVE", "mostly-bad": "CREATE FAILED"}
    assert exported_ids(items, tmp_path / "out", "after") == {"i1"}


def test_a_csv_with_pandas_index_column_imports_without_it(server: Server, tmp_path: Path) -> None:
    control = server.client("personalize")
    control.create_dataset_group(name="pandas")
    items = Dataset(control, "pandas", "ITEMS", POC_ITEMS)
    (tmp_path / "items.csv").write_text(  # what df.to_csv(path) writes: no name over the index
        ",ITEM_ID,GENRE,YEAR\n0,1,Adventure|Animation,1995\n1,2,Comedy,1995\n2,3,Comedy|Romance,1995\n")
    job = items.import_(tmp_path / "items.csv", "indexed")
    assert job["status"] == "ACTIVE", job.get("failureReason")
    exported = read_csv(items.export(tmp_path / "out", "indexed") / "part-00000.csv")
    assert exported == [{"ITEM_ID": "1", "GENRE": "Adventure|Animation", "YEAR": "1995"},
                        {"ITEM_ID": "2", "GENRE": "Comedy", "YEAR": "1995"},
                        {"ITEM_ID": "3", "GENRE": "Comedy|Romance", "YEAR": "1995"}]


def test_header_names_match_schema_fields_in_any_case(server: Server, tmp_path: Path) -> None:
    control = server.client("personalize")
    control.create_dataset_group(name="cases")
    items = Dataset(control, "cases", "ITEMS", schema(
        f("ITEM_ID"), f("CATEGORY", categorical=True), f("CREATION_TIMESTAMP", "long"), name="Items"))
    (tmp_path / "items.csv").write_text("item_id,Category,creation_timestamp\ni1,shoes,1700000000\n")
    job = items.import_(tmp_path / "items.csv", "lower-case")
    assert job["status"] == "ACTIVE", job.get("failureReason")
    assert read_csv(items.export(tmp_path / "out", "cases") / "part-00000.csv") == [
        {"ITEM_ID": "i1", "CATEGORY": "shoes", "CREATION_TIMESTAMP": "1700000000"}]
    (tmp_path / "twice.csv").write_text("ITEM_ID,category,CATEGORY,CREATION_TIMESTAMP\ni1,a,b,1\n")
    twice = items.import_(tmp_path / "twice.csv", "twice")  # a header that is wrong still fails the job
    assert twice["status"] == "CREATE FAILED" and "names a column twice" in twice["failureReason"]


def test_a_union_of_one_type_gets_a_schema_arn_and_imports(server: Server, tmp_path: Path) -> None:
    control = server.client("personalize")
    control.create_dataset_group(name="retail")
    text = schema(f("ITEM_ID", ["string"]), f("PRICE", ["float"]),
                  f("CATEGORY_L1", ["string"], categorical=True),
                  f("CATEGORY_L2", ["null", "string"], categorical=True), name="Items")
    items = Dataset(control, "retail", "ITEMS", text)  # CreateSchema answers with its schemaArn
    schema_arn = control.describe_dataset(datasetArn=items.arn)["dataset"]["schemaArn"]
    assert json.loads(control.describe_schema(schemaArn=schema_arn)["schema"]["schema"]) == json.loads(text)
    (tmp_path / "items.csv").write_text("ITEM_ID,PRICE,CATEGORY_L1,CATEGORY_L2\ni1,9.5,footwear,\n"
                                        "i2,20,footwear,boots\n")
    job = items.import_(tmp_path / "items.csv", "retail")
    assert job["status"] == "ACTIVE", job.get("failureReason")
    assert read_csv(items.export(tmp_path / "out", "retail") / "part-00000.csv") == [
        {"ITEM_ID": "i1", "PRICE": "9.5", "CATEGORY_L1": "footwear", "CATEGORY_L2": ""},
        {"ITEM_ID": "i2", "PRICE": "20", "CATEGORY_L1": "footwear", "CATEGORY_L2": "boots"}]
