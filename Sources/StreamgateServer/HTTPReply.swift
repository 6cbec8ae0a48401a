import NIOCore
import NIOHTTP1

/// A short plain-text HTTP response, written by any HTTP-level handler of the pipeline.
enum HTTPReply {
    /// Writes the response; closes the connection once it is written unless `keepAlive`.
    static func send(_ context: ChannelHandlerContext, status: HTTPResponseStatus, body: String,
                     headers extra: [(String, String)] = [], keepAlive: Bool,
                     contentType: String = "text/plain; charset=utf-8") {
        send(context, status: status, body: context.channel.allocator.buffer(string: body), headers: extra,
             keepAlive: keepAlive, contentType: contentType)
    }

    /// Writes the response with `body`'s bytes.
    static func send(_ context: ChannelHandlerContext, status: HTTPResponseStatus, body: ByteBuffer,
                     headers extra: [(String, String)] = [], keepAlive: Bool, contentType: String) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        for (name, value) in extra { headers.add(name: name, value: value) }
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(NIOAny(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))),
                      promise: nil)
        context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(body))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil))).whenComplete { _ in
            if !keepAlive { channel.close(promise: nil) }
        }
    }
}
