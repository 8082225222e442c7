from fleet.v1 import resources_pb2 as _resources_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PushSitesRequest(_message.Message):
    __slots__ = ("sites",)
    SITES_FIELD_NUMBER: _ClassVar[int]
    sites: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Site]
    def __init__(self, sites: _Optional[_Iterable[_Union[_resources_pb2.Site, _Mapping]]] = ...) -> None: ...

class PushSitesResponse(_message.Message):
    __slots__ = ("summary",)
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    summary: _resources_pb2.SyncSummary
    def __init__(self, summary: _Optional[_Union[_resources_pb2.SyncSummary, _Mapping]] = ...) -> None: ...

class PushDevicesRequest(_message.Message):
    __slots__ = ("devices",)
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Device]
    def __init__(self, devices: _Optional[_Iterable[_Union[_resources_pb2.Device, _Mapping]]] = ...) -> None: ...

class PushDevicesResponse(_message.Message):
    __slots__ = ("summary",)
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    summary: _resources_pb2.SyncSummary
    def __init__(self, summary: _Optional[_Union[_resources_pb2.SyncSummary, _Mapping]] = ...) -> None: ...

class PushMunicipalitiesRequest(_message.Message):
    __slots__ = ("municipalities",)
    MUNICIPALITIES_FIELD_NUMBER: _ClassVar[int]
    municipalities: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Municipality]
    def __init__(self, municipalities: _Optional[_Iterable[_Union[_resources_pb2.Municipality, _Mapping]]] = ...) -> None: ...

class PushMunicipalitiesResponse(_message.Message):
    __slots__ = ("summary",)
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    summary: _resources_pb2.SyncSummary
    def __init__(self, summary: _Optional[_Union[_resources_pb2.SyncSummary, _Mapping]] = ...) -> None: ...

class PushTariffsRequest(_message.Message):
    __slots__ = ("tariffs",)
    TARIFFS_FIELD_NUMBER: _ClassVar[int]
    tariffs: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Tariff]
    def __init__(self, tariffs: _Optional[_Iterable[_Union[_resources_pb2.Tariff, _Mapping]]] = ...) -> None: ...

class PushTariffsResponse(_message.Message):
    __slots__ = ("summary", "periods_written")
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    PERIODS_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    summary: _resources_pb2.SyncSummary
    periods_written: int
    def __init__(self, summary: _Optional[_Union[_resources_pb2.SyncSummary, _Mapping]] = ..., periods_written: _Optional[int] = ...) -> None: ...

class PushMeasurementsRequest(_message.Message):
    __slots__ = ("batch_id", "measurements")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    MEASUREMENTS_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    measurements: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Measurement]
    def __init__(self, batch_id: _Optional[int] = ..., measurements: _Optional[_Iterable[_Union[_resources_pb2.Measurement, _Mapping]]] = ...) -> None: ...

class PushMeasurementsResponse(_message.Message):
    __slots__ = ("batch_id", "accepted", "duplicates")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    accepted: int
    duplicates: int
    def __init__(self, batch_id: _Optional[int] = ..., accepted: _Optional[int] = ..., duplicates: _Optional[int] = ...) -> None: ...
