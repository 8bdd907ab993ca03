//go:build !wasip1

package proxywasm

// Native stand-ins for the host calls so that filter packages build and
// their pure logic tests run outside wasm; every call reports
// StatusUnimplemented.

func proxyLog(level uint32, msg *byte, msgSize uint32) uint32 { return uint32(StatusUnimplemented) }

func proxySetTickPeriodMilliseconds(period uint32) uint32 { return uint32(StatusUnimplemented) }

func proxyGetBufferBytes(bufferType, start, maxSize uint32, retPtr, retSize *uint32) uint32 {
	return uint32(StatusUnimplemented)
}

func proxySetBufferBytes(bufferType, start, size uint32, data *byte, dataSize uint32) uint32 {
	return uint32(StatusUnimplemented)
}

func proxyGetHeaderMapPairs(mapType uint32, retPtr, retSize *uint32) uint32 {
	return uint32(StatusUnimplemented)
}

func proxySetHeaderMapPairs(mapType uint32, data *byte, size uint32) uint32 {
	return uint32(StatusUnimplemented)
}

func proxyGetHeaderMapValue(mapType uint32, key *byte, keySize uint32, retPtr, retSize *uint32) uint32 {
	return uint32(StatusUnimplemented)
}

func proxyAddHeaderMapValue(mapType uint32, key *byte, keySize uint32, value *byte, valueSize uint32) uint32 {
	return uint32(StatusUnimplemented)
}

func proxyReplaceHeaderMapValue(mapType uint32, key *byte, keySize uint32, value *byte, valueSize uint32) uint32 {
	return uint32(StatusUnimplemented)
}

func proxyRemoveHeaderMapValue(mapType uint32, key *byte, keySize uint32) uint32 {
	return uint32(StatusUnimplemented)
}

func proxyGetProperty(path *byte, pathSize uint32, retPtr, retSize *uint32) uint32 {
	return uint32(StatusUnimplemented)
}

func proxySetProperty(path *byte, pathSize uint32, value *byte, valueSize uint32) uint32 {
	return uint32(StatusUnimplemented)
}

func proxySendLocalResponse(statusCode uint32, details *byte, detailsSize uint32, body *byte, bodySize uint32, headers *byte, headersSize uint32, grpcStatus int32) uint32 {
	return uint32(StatusUnimplemented)
}

func proxyContinueStream(streamType uint32) uint32 { return uint32(StatusUnimplemented) }

func proxyCloseStream(streamType uint32) uint32 { return uint32(StatusUnimplemented) }

func proxyHTTPCall(upstream *byte, upstreamSize uint32, headers *byte, headersSize uint32, body *byte, bodySize uint32, trailers *byte, trailersSize uint32, timeoutMillis uint32, retCalloutID *uint32) uint32 {
	return uint32(StatusUnimplemented)
}

func proxyGRPCCall(upstream *byte, upstreamSize uint32, service *byte, serviceSize uint32, method *byte, methodSize uint32, metadata *byte, metadataSize uint32, message *byte, messageSize uint32, timeoutMillis uint32, retCalloutID *uint32) uint32 {
	return uint32(StatusUnimplemented)
}

func proxyGRPCCancel(calloutID uint32) uint32 { return uint32(StatusUnimplemented) }

func proxyGetStatus(retCode, retPtr, retSize *uint32) uint32 { return uint32(StatusUnimplemented) }

func proxySetEffectiveContext(contextID uint32) uint32 { return uint32(StatusUnimplemented) }

func proxyDone() uint32 { return uint32(StatusUnimplemented) }

func proxyDefineMetric(metricType uint32, name *byte, nameSize uint32, retID *uint32) uint32 {
	return uint32(StatusUnimplemented)
}

func proxyIncrementMetric(metricID uint32, offset int64) uint32 { return uint32(StatusUnimplemented) }

func proxyRecordMetric(metricID uint32, value uint64) uint32 { return uint32(StatusUnimplemented) }

func proxyGetMetric(metricID uint32, retValue *uint64) uint32 { return uint32(StatusUnimplemented) }

func proxyGetSharedData(key *byte, keySize uint32, retPtr, retSize, retCas *uint32) uint32 {
	return uint32(StatusUnimplemented)
}

func proxySetSharedData(key *byte, keySize uint32, value *byte, valueSize uint32, cas uint32) uint32 {
	return uint32(StatusUnimplemented)
}

func proxyRegisterSharedQueue(name *byte, nameSize uint32, retToken *uint32) uint32 {
	return uint32(StatusUnimplemented)
}

func proxyResolveSharedQueue(vmID *byte, vmIDSize uint32, name *byte, nameSize uint32, retToken *uint32) uint32 {
	return uint32(StatusUnimplemented)
}

func proxyEnqueueSharedQueue(token uint32, data *byte, dataSize uint32) uint32 {
	return uint32(StatusUnimplemented)
}

func proxyDequeueSharedQueue(token uint32, retPtr, retSize *uint32) uint32 {
	return uint32(StatusUnimplemented)
}
