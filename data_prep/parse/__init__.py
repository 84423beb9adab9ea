"""Parsers for every official MovieLens layout and RecBole atomic files, all yielding `parse.tables.Tables`."""
